"""Helpers for the node tests (not collected): tiny models on disk, service calls, topic capture.

The models are deliberately tiny (MLP width 32, depth 1, 20 noise steps, a few hundred
optimizer steps): the tests check plumbing and loose plausibility, never model quality.
"""
from __future__ import annotations

import threading
from pathlib import Path

TIMEOUT = 30.0
_TRAINED: dict[str, Path] = {}
_TRAIN_LOCK = threading.Lock()


def tiny_recipe():
    from dualdiff_ros.diffusion.training import TrainConfig
    from dualdiff_ros.model_store import Recipe

    return Recipe(architecture={"name": "mlp", "width": 32, "depth": 1},
                  schedule={"kind": "linear", "num_steps": 20},
                  general=TrainConfig(steps=300, batch_size=256, lr=3e-3, lr_schedule="constant", progress=False),
                  specialized=TrainConfig(steps=100, batch_size=32, lr=3e-3, lr_schedule="constant", progress=False),
                  fine_tune=TrainConfig(steps=60, batch_size=32, lr=1e-3, lr_schedule="constant", progress=False))


def tiny_models(tmp_path_factory) -> Path:
    """A ModelStore folder with a cabinet general prior and specialized model, trained once per session."""
    key = str(tmp_path_factory.getbasetemp())
    with _TRAIN_LOCK:
        if key not in _TRAINED:
            _TRAINED[key] = _train(tmp_path_factory.mktemp("tiny_models"))
        return _TRAINED[key]


def _train(root: Path) -> Path:
    import torch

    from dualdiff_ros.domains import get_domain
    from dualdiff_ros.model_store import ModelStore, save, train_general, train_specialized

    torch.set_num_threads(1)  # the machine is small and shared
    domain, recipe, store = get_domain("cabinet"), tiny_recipe(), ModelStore(root)
    general_data = domain.general_dataset(2000, 0)
    general = train_general("cabinet", general_data.conditions, general_data.targets, recipe, seed=0,
                            progress=False)
    save(general, store.general_path("cabinet"))
    special = domain.specialized_dataset(64, 1)
    specialized = train_specialized(general, special.conditions, special.targets, recipe, "fine_tune", seed=0,
                                    progress=False)
    save(specialized, store.specialized_path("cabinet"))
    return root


def call(client, request, timeout: float = TIMEOUT):
    """Call a service from a test thread while an executor spins elsewhere; the reply or AssertionError."""
    future = client.call_async(request)
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    assert done.wait(timeout), f"no reply from {client.srv_name} within {timeout} s"
    return future.result()


class Inbox:
    """Messages of one topic, collected by a subscription on a test node."""

    def __init__(self, node, msg_type, topic: str, qos=10):
        self.messages: list = []
        self._lock = threading.Lock()
        self.subscription = node.create_subscription(msg_type, topic, self._on_message, qos)

    def _on_message(self, msg) -> None:
        with self._lock:
            self.messages.append(msg)

    def snapshot(self) -> list:
        with self._lock:
            return list(self.messages)


def tiny_navigate_models(tmp_path_factory) -> Path:
    """A ModelStore folder with navigate_to models that see the map (quick recipe, tiny data), trained once."""
    key = str(tmp_path_factory.getbasetemp()) + "/navigate"
    with _TRAIN_LOCK:
        if key not in _TRAINED:
            _TRAINED[key] = _train_navigate(tmp_path_factory.mktemp("tiny_navigate_models"))
        return _TRAINED[key]


def _train_navigate(root: Path) -> Path:
    import torch

    from dualdiff_ros.recipes import recipe
    from dualdiff_ros.training_jobs import load_navigation_data, save_navigation_models, train_navigation_models

    torch.set_num_threads(1)
    general, ball_train, _ = load_navigation_data(60, 6, 2, data_dir=root / "data")
    models = train_navigation_models(general, ball_train, recipe("quick", "navigate_to"), seed=0)
    save_navigation_models(models, root, recipe_name="quick")
    return root
