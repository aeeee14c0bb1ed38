"""Simulator node: the PyBullet household (dualdiff_ros.sim) as ROS services, plus the scene for RViz.

Dataset generation and evaluation can take minutes: both are actions (~/generate_dataset,
~/evaluate_proposals: feedback, cancel, result), and the services of the same names run the
same jobs to the end for clients that block. One job runs at a time; parameters, the scene
topic and the rest of the executor stay responsive meanwhile. Not a lifecycle node: it loads
models only for the length of an evaluation.
Evaluation scores the navigate_to models in model_dir (joint, general, specialized) or the
uniform-ring baseline on held-out navigate-to-ball states.
"""
from __future__ import annotations

import json
import math
import secrets
import threading
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from dualdiff_interfaces.action import EvaluateProposals as EvaluateAction
from dualdiff_interfaces.action import GenerateDataset as GenerateAction
from dualdiff_interfaces.srv import EvaluateProposals, GenerateDataset
from geometry_msgs.msg import Quaternion
from nav_msgs.msg import OccupancyGrid
from rclpy.action import ActionServer, CancelResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from .. import serving, sim
from ..diffusion.checkpoint import CheckpointError
from ..diffusion.proposer import MODES
from ..domains import NAVIGATE_TO
from ..model_store import ModelStore
from ..serving import TRAIN_HINT
from ..sim.dataset import FULL_SPECIALIZED_TRAIN_TASKS
from ..sim.perception import step_map
from .checks import check_sampling_settings
from .lifecycle import publish_diagnostics, spin_node
from .parameters import all_or_none_parameters, declare, declare_settings, settings_values
from .topics import SCENE_MAP_TOPIC, SCENE_MARKERS_TOPIC, latched_qos

NODE_NAME = "simulator_node"
DOMAIN = NAVIGATE_TO
EVALUATION_MODES = (*MODES, "ring")
HELD_OUT_SEED = 1  # the specialized (ball) data's seed; held-out tasks follow its training tasks
FEEDBACK_CHUNK = 5  # tasks per generation chunk when an action reports progress (results do not depend on it)


class _Canceled(Exception):
    """The action's client canceled the goal."""


class SimulatorNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, start_parameter_services=False, **kwargs)
        all_or_none_parameters(self)
        declare(self, "model_dir", "~/.dualdiff/models", "ModelStore folder with the navigate_to models.")
        declare(self, "data_dir", "~/.dualdiff/data", "Where generated datasets go when no path is given.")
        declare(self, "held_out_path", "", "Saved NavigateData (.npz) of held-out states to evaluate on; "
                "empty = navigate-to-ball tasks generated after the specialized training tasks.")
        declare(self, "task", "", "Specialized model task name (ModelStore) used for evaluation.")
        declare(self, "workers", 1, "Processes for dataset generation.", int_range=(1, 64))
        declare_settings(self, serving.SAMPLING_SETTINGS)  # the placement service's sampling, evaluated
        declare(self, "scene_seed", 0, "Seed of the scene shown on dualdiff/scene_markers.", int_range=(0, 2**31 - 1))
        declare(self, "scene_task", 0, "Task index of the scene shown.", int_range=(0, 1_000_000))
        declare(self, "scene_step", 0, "Step of that task whose floor the map shows (objects carried away are off "
                "it); past the last step = the last.", int_range=(0, 1000))
        declare(self, "marker_frame", "map", "frame_id of the scene markers.")
        self._held_out = None
        self._held_out_lock = threading.Lock()
        self._work_lock = threading.Lock()  # one long job at a time (services and actions); everything else stays free
        self.current_job = ""
        self.jobs_done = 0
        work = MutuallyExclusiveCallbackGroup()
        self.create_service(GenerateDataset, "~/generate_dataset", self._on_generate, callback_group=work)
        self.create_service(EvaluateProposals, "~/evaluate_proposals", self._on_evaluate, callback_group=work)
        actions = ReentrantCallbackGroup()  # a waiting goal must not block the cancel requests
        accept_cancel = lambda _goal: CancelResponse.ACCEPT  # noqa: E731
        self.actions = [
            ActionServer(self, GenerateAction, "~/generate_dataset", self._execute_generate,
                         cancel_callback=accept_cancel, callback_group=actions),
            ActionServer(self, EvaluateAction, "~/evaluate_proposals", self._execute_evaluate,
                         cancel_callback=accept_cancel, callback_group=actions)]
        publish_diagnostics(self, lambda: (DiagnosticStatus.OK, self.current_job or "idle",
                                           {"jobs_done": str(self.jobs_done)}))
        self.scene_publisher = self.create_publisher(MarkerArray, SCENE_MARKERS_TOPIC, latched_qos(1))
        self.map_publisher = self.create_publisher(OccupancyGrid, SCENE_MAP_TOPIC, latched_qos(1))
        self.add_on_set_parameters_callback(
            lambda params: check_sampling_settings(self, serving.SAMPLING_SETTINGS, params))
        self.add_post_set_parameters_callback(self._parameters_changed)
        self.publish_scene()

    def _parameters_changed(self, params) -> None:
        if any(p.name in ("scene_seed", "scene_task", "scene_step", "marker_frame") for p in params):
            self.publish_scene()
        if any(p.name == "held_out_path" for p in params):
            with self._held_out_lock:
                self._held_out = None

    # ---- actions and their service wrappers ---------------------------------------------------
    def _on_generate(self, request, response):
        return self._fill(response, self._generate(request))

    def _on_evaluate(self, request, response):
        return self._fill(response, self._evaluate(request))

    def _execute_generate(self, goal_handle):
        def progress(done: int, total: int, points: int) -> None:
            self._check_cancel(goal_handle)
            goal_handle.publish_feedback(GenerateAction.Feedback(tasks_done=done, tasks_total=total, points=points))
        return self._finish(goal_handle, GenerateAction.Result(), self._generate(goal_handle.request, progress))

    def _execute_evaluate(self, goal_handle):
        def progress(stage: str, done: int, total: int) -> None:
            self._check_cancel(goal_handle)
            goal_handle.publish_feedback(EvaluateAction.Feedback(stage=stage, states_done=done, states_total=total))
        return self._finish(goal_handle, EvaluateAction.Result(), self._evaluate(goal_handle.request, progress))

    @staticmethod
    def _check_cancel(goal_handle) -> None:
        if goal_handle.is_cancel_requested:
            raise _Canceled()

    @staticmethod
    def _fill(message, fields: dict):
        for name, value in fields.items():
            setattr(message, name, value)
        return message

    def _finish(self, goal_handle, result, fields: dict):
        self._fill(result, fields)
        if result.result == result.RESULT_OK:
            goal_handle.succeed()
        elif result.result == result.RESULT_CANCELED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return result

    def _job(self, label: str, work):
        """Run `work()` as the one job of this node; a cancel becomes RESULT_CANCELED (5, in every action)."""
        with self._work_lock:
            self.current_job = label
            try:
                return work()
            except _Canceled:
                self.get_logger().info(f"{label}: canceled")
                return {"result": 5, "message": f"{label} canceled; nothing written"}
            finally:
                self.current_job = ""
                self.jobs_done += 1

    # ---- datasets ----------------------------------------------------------------------------
    def _generate(self, request, on_progress=None) -> dict:
        """GenerateDataset's reply fields (service and action share them)."""
        codes = GenerateDataset.Response
        if request.split not in ("general", "specialized"):
            return {"result": codes.RESULT_INVALID_REQUEST,
                    "message": f"unknown split {request.split!r}: use 'general' or 'specialized'"}
        if not 1 <= request.num_tasks <= 100_000:
            return {"result": codes.RESULT_INVALID_REQUEST,
                    "message": f"num_tasks {request.num_tasks} is outside 1..100000"}
        path = Path(request.output_path or Path(self.get_parameter("data_dir").value)
                    / f"navigate_{request.split}_seed{request.seed}_tasks{request.num_tasks}.npz").expanduser()
        workers = self.get_parameter("workers").value
        chunk = FEEDBACK_CHUNK if on_progress is not None else 200

        def work() -> dict:
            self.get_logger().info(f"generating {request.split} data: {request.num_tasks} tasks, seed {request.seed}")
            try:
                if request.split == "general":
                    data = sim.generate(request.seed, range(request.num_tasks), sim.GENERAL_TYPES, workers=workers,
                                        chunk=chunk, name="general", on_progress=on_progress)
                else:
                    data = sim.generate(request.seed, sim.ball_task_indices(0, request.num_tasks),
                                        sim.SPECIALIZED_TYPES, workers=workers, name="specialized_train",
                                        chunk=chunk, on_progress=on_progress)
                saved = data.save(path)
            except _Canceled:
                raise
            except Exception as err:  # report, stay up
                self.get_logger().error(f"dataset generation failed: {err!r}")
                return {"result": codes.RESULT_INTERNAL_ERROR, "message": f"{type(err).__name__}: {err}"}
            message = f"{len(data)} points from {data.meta.get('n_states', '?')} states"
            self.get_logger().info(f"wrote {saved}: {message}")
            return {"result": codes.RESULT_OK, "num_points": len(data), "path": str(saved), "message": message}

        return self._job(f"generate_dataset {request.split} x{request.num_tasks}", work)

    # ---- evaluation --------------------------------------------------------------------------
    def _evaluate(self, request, on_progress=None) -> dict:
        """EvaluateProposals' reply fields (service and action share them)."""
        codes = EvaluateProposals.Response
        problem = self._check_evaluation(request)
        if problem:
            return {"result": codes.RESULT_INVALID_REQUEST, "message": problem}

        def work() -> dict:
            try:
                propose_fn = self._proposer_for(request.mode)
            except (CheckpointError, OSError) as err:
                return {"result": codes.RESULT_MODEL_UNAVAILABLE,
                        "message": f"{request.mode} needs the navigate_to models: {err}"}
            try:
                held_out = self._held_out_states(request.num_states)
                report = sim.evaluate_proposer(propose_fn, held_out, request.samples_per_state,
                                               seed=request.seed or secrets.randbelow(2**31), on_progress=on_progress)
            except _Canceled:
                raise
            except Exception as err:  # report, stay up
                self.get_logger().error(f"evaluation failed: {err!r}")
                return {"result": codes.RESULT_INTERNAL_ERROR, "message": f"{type(err).__name__}: {err}"}
            message = f"{report['n_states']} states, validity {report['validity']:.3f}"
            self.get_logger().info(f"evaluated {request.mode}: {message}")
            return {"result": codes.RESULT_OK, "validity_rate": report["validity"],
                    "mean_samples_to_first_valid": report["samples_to_first_valid"], "spread": report["spread"],
                    "ms_per_query": report["ms_per_query"], "report_json": json.dumps({"mode": request.mode, **report}),
                    "message": message}

        return self._job(f"evaluate_proposals {request.mode} x{request.num_states}", work)

    @staticmethod
    def _check_evaluation(request) -> str | None:
        if request.mode not in EVALUATION_MODES:
            return f"unknown mode {request.mode!r}: use one of {', '.join(EVALUATION_MODES)}"
        if not 1 <= request.num_states <= 1000:
            return f"num_states {request.num_states} is outside 1..1000"
        if not 1 <= request.samples_per_state <= 4096:
            return f"samples_per_state {request.samples_per_state} is outside 1..4096"
        return None

    def _proposer_for(self, mode: str):
        """propose_fn(states [n, 10], k, rng) -> [n, k, 2] for the harness; loads the models now."""
        if mode == "ring":
            return sim.ring_proposer
        store = ModelStore(self.get_parameter("model_dir").value)
        task = self.get_parameter("task").value
        if not store.general_path(DOMAIN).exists() and mode != "specialized":
            raise CheckpointError(f"{store.general_path(DOMAIN)} does not exist; {TRAIN_HINT}")
        general = store.load_general(DOMAIN) if mode != "specialized" else None
        specialized = store.load_specialized(DOMAIN, task) if mode != "general" else None
        proposer = serving.proposer_from(settings_values(self, serving.SAMPLING_SETTINGS))

        def propose(states, k, rng):
            return np.stack([proposer.propose(general, specialized, s, k, mode,
                                              int(rng.integers(1, 2**31))).targets for s in states])
        return propose

    def _held_out_states(self, n: int):
        """The first `n` held-out states: from held_out_path, or generated (and cached) ball tasks."""
        with self._held_out_lock:
            if self._held_out is None or len(self._held_out) < n:
                path = self.get_parameter("held_out_path").value
                if path:
                    self._held_out = sim.held_out_states(sim.NavigateData.load(Path(path).expanduser()))
                else:
                    self._held_out = self._generate_held_out(n)
            return self._held_out.head(n)

    def _generate_held_out(self, n: int):
        tasks = max(2, math.ceil(n / 1.5))  # about two ball states per ball task
        while True:
            data = sim.generate(HELD_OUT_SEED, sim.ball_task_indices(FULL_SPECIALIZED_TRAIN_TASKS, tasks),
                                sim.SPECIALIZED_TYPES, name="held_out")
            held_out = sim.held_out_states(data)
            if len(held_out) >= n:
                return held_out
            tasks *= 2

    # ---- the scene ---------------------------------------------------------------------------
    def publish_scene(self) -> None:
        """Walls grey, clutter brown, the task's objects blue (items) and green (receptacle)."""
        scene = sim.generate_scene(self.get_parameter("scene_seed").value, self.get_parameter("scene_task").value)
        frame, stamp = self.get_parameter("marker_frame").value, self.get_clock().now().to_msg()
        clear = Marker(action=Marker.DELETEALL)
        clear.header.frame_id, clear.header.stamp = frame, stamp
        markers = [clear]
        items = len(scene.object_kinds) - 1
        parts = [("walls", scene.walls, [ColorRGBA(r=0.6, g=0.6, b=0.6, a=1.0)] * len(scene.walls)),
                 ("clutter", scene.obstacles, [ColorRGBA(r=0.55, g=0.35, b=0.2, a=1.0)] * len(scene.obstacles)),
                 ("objects", scene.object_rects, [ColorRGBA(r=0.2, g=0.4, b=1.0, a=1.0)] * items
                  + [ColorRGBA(r=0.2, g=0.8, b=0.3, a=1.0)])]
        for ns, rects, colors in parts:
            for i, (rect, color) in enumerate(zip(rects, colors)):
                m = Marker(ns=ns, id=i, type=Marker.CUBE, action=Marker.ADD, color=color)
                m.header.frame_id, m.header.stamp = frame, stamp
                m.pose.position.x, m.pose.position.y, m.pose.position.z = float(rect[0]), float(rect[1]), 0.5
                m.pose.orientation = Quaternion(z=math.sin(rect[4] / 2), w=math.cos(rect[4] / 2))
                m.scale.x, m.scale.y, m.scale.z = float(rect[2]), float(rect[3]), 1.0
                markers.append(m)
        self.scene_publisher.publish(MarkerArray(markers=markers))
        step = min(self.get_parameter("scene_step").value, len(scene.steps) - 1)
        self.map_publisher.publish(occupancy_grid(step_map(scene, step), frame, stamp))


    def destroy_node(self):
        for action in self.actions:
            action.destroy()
        return super().destroy_node()


def occupancy_grid(grid, frame: str, stamp) -> OccupancyGrid:
    """An OccupancyMap as the nav_msgs/OccupancyGrid a map server publishes."""
    msg = OccupancyGrid()
    msg.header.frame_id, msg.header.stamp = frame, stamp
    msg.info.map_load_time = stamp
    msg.info.resolution = float(grid.resolution)
    msg.info.width, msg.info.height = grid.width, grid.height
    msg.info.origin.position.x, msg.info.origin.position.y = float(grid.origin_x), float(grid.origin_y)
    msg.info.origin.orientation = Quaternion(z=math.sin(grid.origin_yaw / 2), w=math.cos(grid.origin_yaw / 2))
    msg.data = grid.to_flat().tobytes()
    return msg


def main(args=None) -> int:
    return spin_node(SimulatorNode, args)
