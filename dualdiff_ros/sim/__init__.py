"""Planar PyBullet household for navigate-to data and for scoring proposals (no ROS, no torch).

    from dualdiff_ros.sim import generate_scene, World, check_targets
    from dualdiff_ros.sim import general_dataset, specialized_datasets, evaluate_proposer, ring_proposer

See docs/simulator.md for the world, the validity rule, the dataset format and measured rates.
PyBullet (and its build banner) loads only when World, check_targets or benchmark_checks is used.
"""
from .baseline import ring_proposer
from .dataset import (
                      GENERAL_TYPES,
                      SPECIALIZED_TYPES,
                      STATE_DIM,
                      STATE_FIELDS,
                      TARGET_DIM,
                      NavigateData,
                      Sampling,
                      ball_task_indices,
                      general_dataset,
                      generate,
                      specialized_datasets,
)
from .evaluate import HeldOut, evaluate_proposer, held_out_states
from .plot import draw_scene
from .scene import (
                      OBJECT_SIZES,
                      OBJECT_TYPES,
                      REACH,
                      ROBOT_RADIUS,
                      TASKS,
                      WORLD_SIZE,
                      NavigateStep,
                      Scene,
                      generate_scene,
                      task_of,
)

__all__ = [
    "GENERAL_TYPES", "SPECIALIZED_TYPES", "STATE_DIM", "STATE_FIELDS", "TARGET_DIM", "NavigateData",
    "Sampling", "ball_task_indices", "general_dataset", "generate", "specialized_datasets", "HeldOut",
    "evaluate_proposer",
    "held_out_states", "ring_proposer", "draw_scene", "OBJECT_SIZES", "OBJECT_TYPES", "REACH", "ROBOT_RADIUS",
    "TASKS", "WORLD_SIZE", "NavigateStep", "Scene", "generate_scene", "task_of", "World", "benchmark_checks",
    "check_targets",
]

_SIMULATOR = ("World", "benchmark_checks", "check_targets")  # dualdiff_ros.sim.world: needs PyBullet


def __getattr__(name: str):
    """The PyBullet world's names, imported on first use (PEP 562)."""
    if name in _SIMULATOR:
        from . import world

        return getattr(world, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
