"""Specialized model node: keeps the robot's observations and retrains the specialized model from them.

Observations are acknowledged only once durable (ObservationStore). Training runs in one
background thread, never in a callback. The action dualdiff/train_specialized gives feedback per
step, cancels and returns the new checkpoint; the service of the same name starts the same job and
answers at once with a job id. Progress also goes to dualdiff/training_progress, and the new
checkpoint, written atomically, is announced on the latched dualdiff/model_info for the proposal
node to load. A lifecycle node: configure opens the observation store, activate announces the
stored models and serves, deactivate cancels a running job, cleanup closes the store.
"""
from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
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
from ..domains import SERVED_DOMAINS
from ..domains.homes import FAMILY_DOMAINS, home_frame
from ..learning import ObservationStore
from ..learning.in_context import context_points
from ..learning.in_context import summary as context_summary
from ..limits import DEFAULT_MARGIN, PlausibleRange, check_absolute
from ..model_store import SPECIALIZATION_METHODS, ModelStore, Recipe, save, train_specialized
from ..navigate_to import model_conditions
from ..serving import not_active
from .common import (
    HOME_CONTEXT_DEPTH,
    HOME_CONTEXT_TOPIC,
    MODEL_INFO_TOPIC,
    OBSERVATIONS_TOPIC,
    TRAIN_ACTION,
    TRAIN_HINT,
    TRAIN_SERVICE,
    TRAINING_PROGRESS_TOPIC,
    all_or_none_parameters,
    check_choices,
    check_domain_and_task,
    check_vector,
    declare,
    declare_autostart,
    latched_qos,
    lifecycle_state,
    log_transition,
    model_info,
    publish_diagnostics,
    specialized_checkpoints,
    spin_node,
)

NODE_NAME = "specialized_model_node"


FEEDBACK_PERIOD = 0.1  # seconds between action feedback messages (the last step is always sent)


class _Stopped(Exception):
    """The node is shutting down or the job was canceled: abandon the training job."""


@dataclass
class Job:
    job_id: str
    domain: str
    task: str
    method: str
    step: int = 0
    total: int = 0
    on_step: object = None  # (job, loss) -> None, e.g. the action's feedback
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    outcome: str = ""       # "succeeded", "failed", "canceled", "stopped"
    message: str = ""
    version: str = ""
    path: str = ""


class SpecializedModelNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, start_parameter_services=False, **kwargs)
        all_or_none_parameters(self)
        self._declare_parameters()
        self.models = ModelStore(self.get_parameter("model_dir").value)
        self.store: ObservationStore | None = None  # opened on configure, closed on cleanup
        self.job: Job | None = None
        self._job_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._new_observations: Counter = Counter()  # (domain, task) -> recorded since the last training
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
        self._stats = Counter()
        publish_diagnostics(self, self._health)

    # ---- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.store = ObservationStore(self.get_parameter("db_path").value)
        except (sqlite3.Error, OSError) as err:
            self.get_logger().error(f"cannot open db_path {self.get_parameter('db_path').value}: {err}")
            return TransitionCallbackReturn.FAILURE
        for domain, task, n in self.store.summary():
            self.get_logger().info(f"{n} observations stored for {domain}" + (f"/{task}" if task else ""))
        self._stopping.clear()
        log_transition(self, "configured (inactive)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._announce_existing()
        for domain, task, _ in self.store.summary():
            self._publish_context(domain, task)
        log_transition(self, "active")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_job()
        log_transition(self, "inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._close()
        log_transition(self, "cleaned up (unconfigured)")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._close()
        log_transition(self, "shut down (finalized)")
        return TransitionCallbackReturn.SUCCESS

    def _stop_job(self) -> None:
        """Abandon a running job (nothing is saved) and wait for its thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._stopping.clear()

    def _close(self) -> None:
        self._stop_job()
        if self.store is not None:
            self.store.close()
            self.store = None

    def _inactive(self) -> str | None:
        """None while active, else why this node refuses work."""
        state = lifecycle_state(self)
        return None if state == "active" and self.store is not None else not_active(
            self.get_fully_qualified_name(), state)

    def _health(self):
        job = self.job
        values = {"observations_stored": str(sum(n for *_, n in self.store.summary())) if self.store else "n/a",
                  "training": f"{job.job_id} step {job.step}/{job.total}" if job else "idle",
                  **{k: str(v) for k, v in sorted(self._stats.items())}}
        failed = self._stats["jobs_failed"]
        return (DiagnosticStatus.WARN if failed else DiagnosticStatus.OK,
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
        declare(self, "fine_tune_epochs", 0, "Fine-tuning epochs (0 = the recipe's default).",
                int_range=(0, 1_000_000))
        declare(self, "scratch_epochs", 0, "Epochs of training from scratch (0 = the recipe's default).",
                int_range=(0, 1_000_000))
        declare(self, "batch_size", 0, "Training batch size (0 = the recipe's default).", int_range=(0, 65536))
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

    def _announce_existing(self) -> None:
        for domain, task, path in specialized_checkpoints(self.models.root, SERVED_DOMAINS):
            try:
                header = verify_checkpoint(path)  # weights and header: a damaged file is never announced
            except CheckpointError as err:
                self.get_logger().error(f"not announcing {path}: {err}")
                continue
            msg = model_info(ModelInfo, "specialized", domain, task, path, header)
            self.model_info_publisher.publish(msg)
            self.get_logger().info(f"specialized model {domain}{'/' + task if task else ''}: "
                                   f"version {msg.version} at {path}")

    # ---- observations ------------------------------------------------------------------------
    def _check_observation(self, domain: str, task: str, state, target) -> str | None:
        """None for an observation worth learning from, else why not (size, finiteness, plausible range)."""
        problem = check_domain_and_task(domain, task)
        if problem:
            return problem
        state_size, target_size = SERVED_DOMAINS[domain]
        problem = check_vector("state", state, state_size) or check_vector("target", target, target_size)
        if problem:
            return problem
        plausible = self._plausible(domain)
        if plausible is None:  # no prior yet: only the absurd is refused now; training checks the range
            return check_absolute("state", state) or check_absolute("target", target)
        problem = plausible.check_state(state) or plausible.check_target(state, target)
        return problem and problem + "; refused, not stored (parameter limits.margin widens the range)"

    def _plausible(self, domain: str) -> PlausibleRange | None:
        """The domain's plausible range from its general prior's header, or None while it has no prior."""
        try:
            header = read_header(self.models.general_path(domain))
        except CheckpointError:
            return None
        return PlausibleRange.from_header(domain, header, self.get_parameter("limits.margin").value)

    def _record(self, domain: str, task: str, state, target, stamp=None) -> tuple[int, int]:
        """Store durably; (id, total for this domain/task). May start a background retrain."""
        oid = self.store.add(domain, task, list(state), list(target), stamp)
        total = self.store.count(domain, task)
        self._publish_context(domain, task)  # before the acknowledgement: the next answer can use it
        self._new_observations[(domain, task)] += 1
        self._maybe_retrain(domain, task, total)
        return oid, total

    def _on_record(self, request, response):
        inactive = self._inactive()
        if inactive:
            response.result, response.message = RecordObservation.Response.RESULT_NOT_ACTIVE, inactive
            return response
        problem = self._check_observation(request.domain, request.task, request.state, request.target)
        if problem:
            response.result, response.message = RecordObservation.Response.RESULT_INVALID_REQUEST, problem
            return response
        try:
            response.observation_id, response.observations_total = self._record(
                request.domain, request.task, request.state, request.target, _stamp(request.header))
        except (sqlite3.Error, OSError, ValueError) as err:
            response.result = RecordObservation.Response.RESULT_INTERNAL_ERROR
            response.message = f"not stored: {err} (check db_path {self.store.path})"
            self.get_logger().error(response.message)
            return response
        response.result = RecordObservation.Response.RESULT_OK
        return response

    def _on_observation(self, msg) -> None:
        inactive = self._inactive()
        if inactive:
            self.get_logger().warning(f"dropped observation on {OBSERVATIONS_TOPIC}: {inactive}",
                                      throttle_duration_sec=10.0)
            return
        problem = self._check_observation(msg.domain, msg.task, msg.state, msg.target)
        if problem:
            self.get_logger().warning(f"dropped observation on {OBSERVATIONS_TOPIC}: {problem}")
            return
        try:
            self._record(msg.domain, msg.task, msg.state, msg.target, _stamp(msg.header))
        except (sqlite3.Error, OSError, ValueError) as err:
            self.get_logger().error(f"observation on {OBSERVATIONS_TOPIC} not stored: {err}")

    def _on_list(self, request, response):
        codes = ListObservations.Response
        inactive = self._inactive()
        if inactive:
            response.result, response.message = codes.RESULT_NOT_ACTIVE, inactive
            return response
        try:
            domain, task = self._selection(request.domain, request.task, request.any_task)
            rows = self.store.list(domain, task, limit=request.limit or self.get_parameter("list_page_size").value,
                                   offset=request.offset)
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
            domain, task = self._selection(request.domain, request.task, request.any_task)
            touched = self._pairs(domain, task)  # before: a pair forgotten whole must hear its count 0
            if request.all_of_domain_task:
                if domain is None:
                    raise ValueError("all_of_domain_task needs a domain: name the domain whose observations go")
                forgotten = self.store.forget(domain=domain, task=task)
            else:
                if not len(request.ids):
                    raise ValueError("name the ids to forget (see list_observations), or set all_of_domain_task")
                forgotten = self.store.forget(ids=[int(i) for i in request.ids], domain=domain, task=task)
        except ValueError as err:
            response.result, response.message = codes.RESULT_INVALID_REQUEST, str(err)
            return response
        except sqlite3.Error as err:
            response.result, response.message = codes.RESULT_INTERNAL_ERROR, f"not forgotten: {err}"
            return response
        for d, t in touched:
            self._publish_context(d, t)
        response.result, response.forgotten = codes.RESULT_OK, forgotten
        response.message = f"forgot {forgotten} observations; the next training leaves them out"
        self.get_logger().info(response.message)
        return response

    @staticmethod
    def _selection(domain: str, task: str, any_task: bool) -> tuple[str | None, str | None]:
        """(domain, task) filters of a list/forget request: None = any; names checked like observations'."""
        if not domain:
            if task or any_task:
                raise ValueError("a task needs its domain: set domain too")
            return None, None
        if any_task and task:
            raise ValueError("any_task and a task name exclude each other: leave task empty")
        problem = check_domain_and_task(domain, "" if any_task else task)
        if problem:
            raise ValueError(problem)
        return domain, None if any_task else task

    def _maybe_retrain(self, domain: str, task: str, total: int) -> None:
        every = self.get_parameter("retrain_every").value
        if not every or self._new_observations[(domain, task)] < every:
            return
        if total < self.get_parameter("min_observations").value:
            return
        job, _ = self._start(domain, task, "")
        if job is not None:
            self.get_logger().info(f"{every} new observations of {domain}: retraining in the background")

    # ---- training ----------------------------------------------------------------------------
    def _on_train(self, request, response):
        codes = TrainSpecialized.Response
        inactive = self._inactive()
        if inactive:
            response.result, response.message = codes.RESULT_NOT_ACTIVE, inactive
            return response
        problem = self._check_training(request.domain, request.task, request.method)
        if problem:
            response.result, response.message = codes.RESULT_INVALID_REQUEST, problem
            return response
        job, busy = self._start(request.domain, request.task, request.method)
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
        problem = self._check_training(goal.domain, goal.task, goal.method)
        if problem:
            return finish(codes.RESULT_INVALID_REQUEST, problem)
        last = [0.0]

        def feedback(job: Job, loss: float) -> None:
            now = time.monotonic()
            if now - last[0] >= FEEDBACK_PERIOD or job.step >= job.total:
                last[0] = now
                goal_handle.publish_feedback(TrainAction.Feedback(job_id=job.job_id, step=job.step,
                                                                  total_steps=job.total, loss=float(loss)))

        job, busy = self._start(goal.domain, goal.task, goal.method, on_step=feedback)
        if job is None:
            return finish(codes.RESULT_BUSY, busy)
        while not job.done.wait(0.05):
            if goal_handle.is_cancel_requested:
                job.cancel.set()
        result = {"succeeded": codes.RESULT_OK, "canceled": codes.RESULT_CANCELED,
                  "stopped": codes.RESULT_NOT_ACTIVE}.get(job.outcome, codes.RESULT_INTERNAL_ERROR)
        return finish(result, job.message, job)

    def _check_training(self, domain: str, task: str, method: str) -> str | None:
        problem = check_domain_and_task(domain, task)
        if problem:
            return problem
        if method and method not in SPECIALIZATION_METHODS:
            return (f"unknown method {method!r}: use '' (the node's default) or one of "
                    f"{', '.join(SPECIALIZATION_METHODS)}")
        have, need = self.store.count(domain, task), self.get_parameter("min_observations").value
        if have < need:
            return (f"only {have} observations stored for {domain}{'/' + task if task else ''}: record at least "
                    f"{need} (parameter min_observations) with {self.get_name()}/record_observation first")
        try:
            read_header(self.models.general_path(domain))
        except CheckpointError as err:
            return f"the specialized model starts from the general prior, which is not usable: {err}; {TRAIN_HINT}"
        return None

    def _start(self, domain: str, task: str, method: str, on_step=None) -> tuple[Job | None, str]:
        """(the job started in the background, "") or (None, why not: another job is running)."""
        with self._job_lock:
            if self.job is not None:
                j = self.job
                return None, f"job {j.job_id} ({j.domain}) is running, step {j.step}/{j.total}: try again when it ends"
            method = method or self.get_parameter("method").value
            job = Job(f"{domain}{'-' + task if task else ''}-{uuid.uuid4().hex[:8]}", domain, task, method,
                      on_step=on_step)
            self.job = job
            self._new_observations[(domain, task)] = 0
            self._thread = threading.Thread(target=self._run, args=(job,), name=f"train-{job.job_id}", daemon=True)
            self._thread.start()
        return job, ""

    def _recipe(self) -> Recipe:
        recipe, batch = Recipe(), self.get_parameter("batch_size").value
        fine_tune_epochs, scratch_epochs = (self.get_parameter(p).value for p in ("fine_tune_epochs", "scratch_epochs"))
        recipe.fine_tune = replace(recipe.fine_tune, epochs=fine_tune_epochs or recipe.fine_tune.epochs,
                                   batch_size=batch or recipe.fine_tune.batch_size)
        recipe.specialized = replace(recipe.specialized, epochs=scratch_epochs or recipe.specialized.epochs,
                                     batch_size=batch or recipe.specialized.batch_size)
        return recipe

    def _run(self, job: Job) -> None:
        """The training thread: the only place this node touches torch."""
        log = self.get_logger()
        label = f"{job.domain}{'/' + job.task if job.task else ''}"
        try:
            states, targets, note = self._training_data(job)
            self._progress(job, "running", 0.0, f"{len(states)} observations, method {job.method}{note}")
            log.info(f"job {job.job_id}: {job.method} on {len(states)} observations of {label}{note}")
            general = self.models.load_general(job.domain)
            conditions = model_conditions(general, states)  # observations carry no map: "no map" features
            model = train_specialized(general, conditions, targets, self._recipe(), job.method, job.task,
                                      seed=self.get_parameter("seed").value, progress=False,
                                      on_step=lambda step, total, loss: self._on_step(job, step, total, loss))
            path = self.models.specialized_path(job.domain, job.task)
            version = save(model, path)
            msg = model_info(ModelInfo, "specialized", job.domain, job.task, path, read_header(path))
            self.model_info_publisher.publish(msg)
            job.outcome, job.version, job.path = "succeeded", str(version), str(path)
            job.message = f"version {version} saved to {path}"
            self._progress(job, "succeeded", float("nan"), job.message)
            log.info(f"job {job.job_id}: specialized model {label} version {version} saved to {path}")
        except _Stopped:
            if job.cancel.is_set():
                job.outcome, job.message = "canceled", f"job {job.job_id} canceled at step {job.step}; nothing saved"
                self._progress(job, "canceled", float("nan"), job.message)
            else:
                job.outcome, job.message = "stopped", f"job {job.job_id} abandoned: the node is deactivating"
            log.info(job.message)
        except Exception as err:  # report on the topic; the node stays up
            job.outcome, job.message = "failed", f"{type(err).__name__}: {err}"
            self._progress(job, "failed", float("nan"), job.message)
            log.error(f"job {job.job_id} failed: {err!r}")
        finally:
            self._stats[f"jobs_{job.outcome or 'failed'}"] += 1
            with self._job_lock:
                self.job = None
            job.done.set()

    def _plausible_rows(self, domain: str, task: str) -> tuple[list, list[int]]:
        """(rows inside the plausible range, ids of the rest): what training and the home context use."""
        rows = self.store.list(domain, task)
        plausible = self._plausible(domain)
        keep = [r for r in rows if plausible is None or not (plausible.check_state(r.state)
                                                             or plausible.check_target(r.state, r.target))]
        kept = {r.id for r in keep}
        return keep, [r.id for r in rows if r.id not in kept]

    def _pairs(self, domain: str | None, task: str | None) -> list[tuple[str, str]]:
        """The stored (domain, task) pairs a list/forget selection covers (None = any)."""
        return [(d, t) for d, t, _ in self.store.summary()
                if (domain is None or d == domain) and (task is None or t == task)]

    def _publish_context(self, domain: str, task: str) -> None:
        """The home's observations as the home-aware prior reads them (latched, one per domain/task)."""
        if domain not in FAMILY_DOMAINS:
            return
        rows, _ = self._plausible_rows(domain, task)
        local = home_frame(domain, np.array([r.state for r in rows]).reshape(-1, 3),
                           np.array([r.target for r in rows]).reshape(-1, 3))
        msg = HomeContext(domain=domain, task=task, count=len(rows), summary=context_summary(local).tolist(),
                          points=[Point(x=float(x), y=float(y), z=float(z)) for x, y, z in context_points(local)])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.context_publisher.publish(msg)

    def _training_data(self, job: Job):
        """(states, targets, note): the stored observations inside the plausible range; the rest are left out."""
        keep, left_out = self._plausible_rows(job.domain, job.task)
        if len(keep) < self.get_parameter("min_observations").value:
            raise ValueError(f"only {len(keep)} plausible observations (left out ids {left_out[:10]}): record more, "
                             "or forget the implausible ones with forget_observations")
        note = (f"; left out {len(left_out)} outside the plausible range (ids {left_out[:10]}; "
                "forget_observations removes them)") if left_out else ""
        return (np.array([r.state for r in keep], dtype=np.float64),
                np.array([r.target for r in keep], dtype=np.float64), note)

    def _on_step(self, job: Job, step: int, total: int, loss: float) -> None:
        if self._stopping.is_set() or job.cancel.is_set():
            raise _Stopped()
        job.step, job.total = step, total
        self._progress(job, "running", loss)
        if job.on_step is not None:
            job.on_step(job, loss)

    def _progress(self, job: Job, state: str, loss: float, message: str = "") -> None:
        if self._stopping.is_set():
            return
        self.progress_publisher.publish(TrainingProgress(
            job_id=job.job_id, domain=job.domain, task=job.task, state=state, step=job.step,
            total_steps=job.total, loss=float(loss), message=message))

    def destroy_node(self):
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.store is not None:
            self.store.close()
            self.store = None
        self.train_action.destroy()
        return super().destroy_node()


def _stamp(header) -> tuple[int, int] | None:
    """The observation's header stamp, or None when the sender left it zero."""
    stamp = header.stamp
    return (int(stamp.sec), int(stamp.nanosec)) if (stamp.sec or stamp.nanosec) else None


def main(args=None) -> int:
    return spin_node(SpecializedModelNode, args)
