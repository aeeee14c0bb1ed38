"""Specialized model node: keeps the robot's observations and retrains the specialized model from them.

Glue around learning/trainer.py, which checks, stores, lists and forgets observations and runs
the training job in one background thread, never in a callback. Observations are acknowledged
only once durable. The action dualdiff/train_specialized gives feedback per step, cancels and
returns the new checkpoint; the service of the same name starts the same job and answers at once
with a job id. Progress also goes to dualdiff/training_progress, and the new checkpoint, written
atomically, is announced on the latched dualdiff/model_info for the proposal node to load; each
home's observations go to the latched dualdiff/home_context for the home-aware prior. A lifecycle
node: configure opens the observation store, activate announces the stored models and serves,
deactivate cancels a running job, cleanup closes the store.
"""
from __future__ import annotations

import sqlite3
import time

from diagnostic_msgs.msg import DiagnosticStatus
from dualdiff_interfaces.action import TrainSpecialized as TrainAction
from dualdiff_interfaces.msg import HomeContext, ModelInfo, Observation, TrainingProgress
from dualdiff_interfaces.srv import ForgetObservations, ListObservations, RecordObservation, TrainSpecialized
from geometry_msgs.msg import Point
from rcl_interfaces.msg import SetParametersResult
from rclpy.action import ActionServer, CancelResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy

from ..diffusion.checkpoint import CheckpointError, read_header, verify_checkpoint
from ..diffusion.training import warm_up_training
from ..learning.trainer import Hooks, Job, Trainer, label
from ..limits import DEFAULT_MARGIN
from ..model_store import SPECIALIZATION_METHODS, ModelStore
from ..serving import not_active
from ..spec_training import catalogue
from .checks import check_choices
from .lifecycle import lifecycle_state, log_transition, publish_diagnostics, spin_node
from .models import model_info
from .parameters import all_or_none_parameters, declare, declare_autostart
from .topics import (
    HOME_CONTEXT_DEPTH,
    HOME_CONTEXT_TOPIC,
    MODEL_INFO_TOPIC,
    OBSERVATIONS_TOPIC,
    TRAIN_ACTION,
    TRAIN_SERVICE,
    TRAINING_PROGRESS_TOPIC,
    latched_qos,
)

NODE_NAME = "specialized_model_node"
FEEDBACK_PERIOD = 0.1  # seconds between action feedback messages (the last step is always sent)


class SpecializedModelNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, start_parameter_services=False, **kwargs)
        all_or_none_parameters(self)
        self._declare_parameters()
        self.models = ModelStore(self.get_parameter("model_dir").value)
        hooks = Hooks(context=self._publish_context, progress=self._publish_progress, saved=self._announce)
        self.trainer = Trainer(self.models, lambda name: self.get_parameter(name).value, self.get_logger(), hooks,
                               record_service=f"{self.get_name()}/record_observation")
        self.add_on_set_parameters_callback(self._check_parameters)

        self.model_info_publisher = self.create_publisher(ModelInfo, MODEL_INFO_TOPIC, latched_qos())
        self.context_publisher = self.create_publisher(HomeContext, HOME_CONTEXT_TOPIC,
                                                       latched_qos(HOME_CONTEXT_DEPTH))
        self.progress_publisher = self.create_publisher(
            TrainingProgress, TRAINING_PROGRESS_TOPIC, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        record_group, train_group = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        self.create_service(RecordObservation, "~/record_observation", self._on_record, callback_group=record_group)
        self.create_subscription(Observation, OBSERVATIONS_TOPIC, self._on_observation, 100,
                                 callback_group=record_group)
        self.create_service(TrainSpecialized, TRAIN_SERVICE, self._on_train, callback_group=train_group)
        self.create_service(ListObservations, "~/list_observations", self._on_list, callback_group=record_group)
        self.create_service(ForgetObservations, "~/forget_observations", self._on_forget, callback_group=record_group)
        # Goals wait for their job in an executor thread: a reentrant group lets cancels and feedback through.
        self.train_action = ActionServer(self, TrainAction, TRAIN_ACTION, self._execute_train,
                                         cancel_callback=lambda _goal: CancelResponse.ACCEPT,
                                         callback_group=ReentrantCallbackGroup())
        publish_diagnostics(self, self._health)

    store = property(lambda self: self.trainer.store, doc="The observation store while configured, else None.")
    job = property(lambda self: self.trainer.job, doc="The running training job, or None.")

    # ---- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.trainer.open(self.get_parameter("db_path").value)
        except (sqlite3.Error, OSError) as err:
            self.get_logger().error(f"cannot open db_path {self.get_parameter('db_path').value}: {err}")
            return TransitionCallbackReturn.FAILURE
        for domain, task, n in self.store.summary():
            self.get_logger().info(f"{n} observations stored for {label(domain, task)}")
        warm = warm_up_training()  # else the first retraining pays it while answers are being given
        if warm:
            self.get_logger().info(f"torch's training set up in {warm:.2f} s (once per process)")
        log_transition(self, "configured (inactive)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._announce_existing()
        self.trainer.publish_contexts()
        log_transition(self, "active")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.trainer.stop_job()
        log_transition(self, "inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.trainer.close()
        log_transition(self, "cleaned up (unconfigured)")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.trainer.close()
        log_transition(self, "shut down (finalized)")
        return TransitionCallbackReturn.SUCCESS

    def _inactive(self) -> str | None:
        """None while active, else why this node refuses work."""
        state = lifecycle_state(self)
        return None if state == "active" and self.store is not None else not_active(
            self.get_fully_qualified_name(), state)

    def _health(self):
        job, stats = self.job, self.trainer.stats
        values = {"observations_stored": str(sum(n for *_, n in self.store.summary())) if self.store else "n/a",
                  "training": f"{job.job_id} step {job.step}/{job.total}" if job else "idle",
                  **{k: str(v) for k, v in sorted(stats.items())}}
        return (DiagnosticStatus.WARN if stats["jobs_failed"] else DiagnosticStatus.OK,
                ("training " + job.job_id) if job else "idle", values)

    def _declare_parameters(self) -> None:
        declare(self, "model_dir", "~/.dualdiff/models",
                "ModelStore folder: reads <domain>/general.safetensors, writes <domain>/specialized*.safetensors.",
                read_only=True)
        declare(self, "db_path", "~/.dualdiff/observations.sqlite", "SQLite file of the observations.",
                read_only=True)
        declare(self, "retrain_every", 20, "Retrain in the background after this many new observations of a "
                "domain/task (0 = only when dualdiff/train_specialized is called).", int_range=(0, 1_000_000))
        declare(self, "method", "fine_tune", "How to specialize when a request leaves the method empty.",
                choices=SPECIALIZATION_METHODS)
        declare(self, "min_observations", 8, "Fewest stored observations a training job accepts.",
                int_range=(1, 1_000_000))
        declare(self, "fine_tune_epochs", 0, "Fine-tuning epochs (0 = the domain's recipe's default).",
                int_range=(0, 1_000_000))
        declare(self, "scratch_epochs", 0, "Epochs of training from scratch (0 = the domain's recipe's default).",
                int_range=(0, 1_000_000))
        declare(self, "batch_size", 0, "Training batch size (0 = the domain's recipe's default).",
                int_range=(0, 65536))
        declare(self, "seed", 0, "Training seed: the same observations and seed give the same model.",
                int_range=(0, 2**31 - 1))
        declare(self, "limits.margin", DEFAULT_MARGIN,
                "An observation is refused when its state, or its target relative to the state, lies further "
                "outside the general data's range than this many spans of that range.", float_range=(0.0, 1e6))
        declare(self, "list_page_size", 100, "Rows ~/list_observations returns when a request's limit is 0.",
                int_range=(1, 100_000))
        declare_autostart(self)

    def _check_parameters(self, params) -> SetParametersResult:
        return check_choices(params, {"method": SPECIALIZATION_METHODS})

    # ---- what the trainer reports ------------------------------------------------------------
    def _announce_existing(self) -> None:
        for domain, task, path in self.models.specialized_checkpoints(catalogue(self.models.root)):
            try:
                header = verify_checkpoint(path)  # weights and header: a damaged file is never announced
            except CheckpointError as err:
                self.get_logger().error(f"not announcing {path}: {err}")
                continue
            msg = model_info(ModelInfo, "specialized", domain, task, path, header)
            self.model_info_publisher.publish(msg)
            self.get_logger().info(f"specialized model {label(domain, task)}: version {msg.version} at {path}")

    def _announce(self, domain: str, task: str, path) -> None:
        """A checkpoint the trainer saved, for the proposal node to load."""
        self.model_info_publisher.publish(model_info(ModelInfo, "specialized", domain, task, path, read_header(path)))

    def _publish_context(self, domain: str, task: str, count: int, summary: list[float], points) -> None:
        """The home's observations as the home-aware prior reads them (latched, one per domain/task)."""
        msg = HomeContext(domain=domain, task=task, count=count, summary=summary,
                          points=[Point(x=float(x), y=float(y), z=float(z)) for x, y, z in points])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.context_publisher.publish(msg)

    def _publish_progress(self, job: Job, state: str, loss: float, message: str) -> None:
        self.progress_publisher.publish(TrainingProgress(
            job_id=job.job_id, domain=job.domain, task=job.task, state=state, step=job.step,
            total_steps=job.total, loss=float(loss), message=message))

    # ---- observations ------------------------------------------------------------------------
    def _on_record(self, request, response):
        codes = RecordObservation.Response
        inactive = self._inactive()
        if inactive:
            response.result, response.message = codes.RESULT_NOT_ACTIVE, inactive
            return response
        problem = self.trainer.check_observation(request.domain, request.task, request.state, request.target)
        if problem:
            response.result, response.message = codes.RESULT_INVALID_REQUEST, problem
            return response
        try:
            response.observation_id, response.observations_total = self.trainer.record(
                request.domain, request.task, request.state, request.target, _stamp(request.header))
        except (sqlite3.Error, OSError, ValueError) as err:
            response.result = codes.RESULT_INTERNAL_ERROR
            response.message = f"not stored: {err} (check db_path {self.store.path})"
            self.get_logger().error(response.message)
            return response
        response.result = codes.RESULT_OK
        return response

    def _on_observation(self, msg) -> None:
        inactive = self._inactive()
        if inactive:
            self.get_logger().warning(f"dropped observation on {OBSERVATIONS_TOPIC}: {inactive}",
                                      throttle_duration_sec=10.0)
            return
        problem = self.trainer.check_observation(msg.domain, msg.task, msg.state, msg.target)
        if problem:
            self.get_logger().warning(f"dropped observation on {OBSERVATIONS_TOPIC}: {problem}")
            return
        try:
            self.trainer.record(msg.domain, msg.task, msg.state, msg.target, _stamp(msg.header))
        except (sqlite3.Error, OSError, ValueError) as err:
            self.get_logger().error(f"observation on {OBSERVATIONS_TOPIC} not stored: {err}")

    def _on_list(self, request, response):
        codes = ListObservations.Response
        inactive = self._inactive()
        if inactive:
            response.result, response.message = codes.RESULT_NOT_ACTIVE, inactive
            return response
        try:
            rows = self.trainer.list_rows(request.domain, request.task, request.any_task,
                                          request.limit or self.get_parameter("list_page_size").value, request.offset)
        except ValueError as err:
            response.result, response.message = codes.RESULT_INVALID_REQUEST, str(err)
            return response
        except sqlite3.Error as err:
            response.result, response.message = codes.RESULT_INTERNAL_ERROR, f"cannot read {self.store.path}: {err}"
            return response
        response.ids = [r.id for r in rows]
        response.domains, response.tasks = [r.domain for r in rows], [r.task for r in rows]
        response.state_sizes, response.target_sizes = [len(r.state) for r in rows], [len(r.target) for r in rows]
        response.states = [float(v) for r in rows for v in r.state]
        response.targets = [float(v) for r in rows for v in r.target]
        response.has_stamp = [r.stamp is not None for r in rows]
        response.stamp_sec = [int(r.stamp[0]) if r.stamp else 0 for r in rows]
        response.stamp_nanosec = [int(r.stamp[1]) if r.stamp else 0 for r in rows]
        response.stored_at = [float(r.stored_at) for r in rows]
        response.result, response.message = codes.RESULT_OK, f"{len(rows)} observations"
        return response

    def _on_forget(self, request, response):
        codes = ForgetObservations.Response
        inactive = self._inactive()
        if inactive:
            response.result, response.message = codes.RESULT_NOT_ACTIVE, inactive
            return response
        try:
            forgotten = self.trainer.forget(request.domain, request.task, request.any_task,
                                            request.all_of_domain_task, request.ids)
        except ValueError as err:
            response.result, response.message = codes.RESULT_INVALID_REQUEST, str(err)
            return response
        except sqlite3.Error as err:
            response.result, response.message = codes.RESULT_INTERNAL_ERROR, f"not forgotten: {err}"
            return response
        response.result, response.forgotten = codes.RESULT_OK, forgotten
        response.message = f"forgot {forgotten} observations; the next training leaves them out"
        self.get_logger().info(response.message)
        return response

    # ---- training ----------------------------------------------------------------------------
    def _on_train(self, request, response):
        codes = TrainSpecialized.Response
        inactive = self._inactive()
        if inactive:
            response.result, response.message = codes.RESULT_NOT_ACTIVE, inactive
            return response
        problem = self.trainer.check_training(request.domain, request.task, request.method)
        if problem:
            response.result, response.message = codes.RESULT_INVALID_REQUEST, problem
            return response
        job, busy = self.trainer.start(request.domain, request.task, request.method)
        if job is None:
            response.result, response.message = codes.RESULT_BUSY, busy
            return response
        response.result, response.job_id = codes.RESULT_OK, job.job_id
        response.message = f"training started; progress on {TRAINING_PROGRESS_TOPIC}"
        return response

    def _execute_train(self, goal_handle):
        """The action: the same job as the service, with feedback, cancel and the checkpoint as result."""
        goal, codes = goal_handle.request, TrainAction.Result

        def finish(result: int, message: str, job: Job | None = None):
            if result == codes.RESULT_OK:
                goal_handle.succeed()
            elif result == codes.RESULT_CANCELED and goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                goal_handle.abort()
            return TrainAction.Result(result=result, message=message, job_id=job.job_id if job else "",
                                      version=job.version if job else "", checkpoint_path=job.path if job else "")

        inactive = self._inactive()
        if inactive:
            return finish(codes.RESULT_NOT_ACTIVE, inactive)
        problem = self.trainer.check_training(goal.domain, goal.task, goal.method)
        if problem:
            return finish(codes.RESULT_INVALID_REQUEST, problem)
        last = [0.0]

        def feedback(job: Job, loss: float) -> None:
            now = time.monotonic()
            if now - last[0] >= FEEDBACK_PERIOD or job.step >= job.total:
                last[0] = now
                goal_handle.publish_feedback(TrainAction.Feedback(job_id=job.job_id, step=job.step,
                                                                  total_steps=job.total, loss=float(loss)))

        job, busy = self.trainer.start(goal.domain, goal.task, goal.method, on_step=feedback)
        if job is None:
            return finish(codes.RESULT_BUSY, busy)
        while not job.done.wait(0.05):
            if goal_handle.is_cancel_requested:
                job.cancel.set()
        result = {"succeeded": codes.RESULT_OK, "canceled": codes.RESULT_CANCELED,
                  "stopped": codes.RESULT_NOT_ACTIVE}.get(job.outcome, codes.RESULT_INTERNAL_ERROR)
        return finish(result, job.message, job)

    def destroy_node(self):
        self.trainer.close(for_good=True)
        self.train_action.destroy()
        return super().destroy_node()


def _stamp(header) -> tuple[int, int] | None:
    """The observation's header stamp, or None when the sender left it zero."""
    stamp = header.stamp
    return (int(stamp.sec), int(stamp.nanosec)) if (stamp.sec or stamp.nanosec) else None


def main(args=None) -> int:
    return spin_node(SpecializedModelNode, args)
