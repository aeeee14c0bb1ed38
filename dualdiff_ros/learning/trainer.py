"""Learning on the robot, without ROS: the robot's observations, their checks, and the training job.

The specialized model node is glue around this module, as the placement node is around
serving.py: it turns requests into calls here and publishes what this module hands its hooks
(a home's context, training progress, a new checkpoint). Observations are checked against the
general prior's plausible range before they are stored (ObservationStore: acknowledged only once
durable), listed and forgotten; training runs in one background thread, never in a callback,
with its domain's recipe from the one registry (recipes.py). Parameters are read through
`setting(name)` at the moment they are used, so a changed parameter applies to the next job.
"""
from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from ..diffusion.checkpoint import CheckpointError, read_header
from ..domains.homes import FAMILY_DOMAINS, home_frame
from ..domains.spec import BUILTIN_SPECS, NAME, DomainSpec
from ..limits import PlausibleRange, check_absolute
from ..model_store import SPECIALIZATION_METHODS, ModelStore, Recipe, check_task, save, train_specialized
from ..navigate_to import model_conditions
from ..recipes import recipe as named_recipe
from ..serving import TRAIN_HINT, check_vector, quote
from ..spec_training import (
    SPEC_KEY,
    catalogue,
    mark_spec,
    spec_in_metadata,
    spec_of_model,
    spec_recipe,
    targets_for_model,
    targets_in_model_frame,
)
from .in_context import context_points
from .in_context import summary as context_summary
from .observations import ObservationStore

# The recipe whose fine-tune (and training from scratch) the robot uses, per domain: the one the
# studies measured (synthetic domains: rank-8 LoRA, lr 1e-3; navigate_to: a full fine-tune, lr 3e-4).
ON_ROBOT_RECIPE = "full"


class Stopped(Exception):
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


def label(domain: str, task: str) -> str:
    """"domain" or "domain/task", as messages name a pair."""
    return domain + (f"/{task}" if task else "")


def check_domain_and_task(domain: str, task: str, known=None) -> str | None:
    """None for a known domain and a well-formed task name, else the reason and the fix.

    `known`: the domain names this robot knows (spec_training.catalogue: the built-in ones and
    each with a spec-carrying general prior); None = the built-in ones.
    """
    known = list(BUILTIN_SPECS if known is None else known)
    if domain not in known:
        return (f"unknown domain {quote(domain)}: use one of {', '.join(known)} (a domain of your own is known once "
                "its general prior, `dualdiff train --spec SPEC --data PARQUET`, is in model_dir)")
    try:
        check_task(task)
    except ValueError as err:
        return str(err)
    return None


def selection(domain: str, task: str, any_task: bool, known=None) -> tuple[str | None, str | None]:
    """(domain, task) filters of a list/forget request: None = any; names checked like observations' (`known`)."""
    if not domain:
        if task or any_task:
            raise ValueError("a task needs its domain: set domain too")
        return None, None
    if any_task and task:
        raise ValueError("any_task and a task name exclude each other: leave task empty")
    problem = check_domain_and_task(domain, "" if any_task else task, known)
    if problem:
        raise ValueError(problem)
    return domain, None if any_task else task


def home_context(domain: str, rows) -> tuple[int, list[float], np.ndarray]:
    """(count, summary, points) of a home's stored observations as the home-aware prior reads them.

    `rows` are the plausible observations of one (domain, task) of a home-family domain; the
    summary and the points (at most MAX_CONTEXT_POINTS, evenly spread) are in the furniture's
    frame (learning/in_context.py): the set encoder and the answer check read the points.
    """
    local = home_frame(domain, np.array([r.state for r in rows]).reshape(-1, 3),
                       np.array([r.target for r in rows]).reshape(-1, 3))
    return len(rows), context_summary(local).tolist(), context_points(local)


def on_robot_recipe(domain: str, fine_tune_epochs: int = 0, scratch_epochs: int = 0, batch_size: int = 0,
                    spec: DomainSpec | None = None) -> Recipe:
    """The domain's recipe, with the node's epoch and batch overrides (0 = the recipe's).

    A prior trained from a spec (`dualdiff train --spec`) specializes with the recipe its spec
    gives (spec_training.spec_recipe: the spec's `recipes.full` sizes over the registry's); an
    older prior of a built-in domain with the registry's recipe, as before specs.
    """
    recipe = spec_recipe(spec, ON_ROBOT_RECIPE) if spec is not None else named_recipe(ON_ROBOT_RECIPE, domain)
    return replace(recipe,
                   fine_tune=replace(recipe.fine_tune, epochs=fine_tune_epochs or recipe.fine_tune.epochs,
                                     batch_size=batch_size or recipe.fine_tune.batch_size),
                   specialized=replace(recipe.specialized, epochs=scratch_epochs or recipe.specialized.epochs,
                                       batch_size=batch_size or recipe.specialized.batch_size))


@dataclass
class Hooks:
    """What the trainer reports; the node publishes it. Each is called from the thread that caused it."""

    context: Callable = lambda domain, task, count, summary, points: None  # a home's observations changed
    progress: Callable = lambda job, state, loss, message: None    # a training job's state, per step
    saved: Callable = lambda domain, task, path: None              # a new checkpoint, written atomically


class Trainer:
    """One robot's observations and its one training job at a time (the specialized model node's work).

    `setting(name)` reads a node parameter (retrain_every, method, min_observations,
    fine_tune_epochs, scratch_epochs, batch_size, seed, limits.margin); `log` has info, warning
    and error; `record_service` names where observations are recorded, for messages.
    """

    def __init__(self, models: ModelStore, setting: Callable[[str], object], log, hooks: Hooks,
                 record_service: str = "record_observation"):
        self.models, self.setting, self.log, self.hooks = models, setting, log, hooks
        self.record_service = record_service
        self.store: ObservationStore | None = None  # opened on configure, closed on cleanup
        self.job: Job | None = None
        self.stats: Counter = Counter()
        self._job_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._new_observations: Counter = Counter()  # (domain, task) -> recorded since the last training

    # ---- store ------------------------------------------------------------------------------
    def open(self, db_path: str) -> None:
        """Open the observation store (sqlite3.Error or OSError when it cannot be)."""
        self.store = ObservationStore(db_path)
        self._stopping.clear()

    def stop_job(self, for_good: bool = False) -> None:
        """Abandon a running job (nothing is saved) and wait for its thread; `for_good`: report nothing more."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if not for_good:
            self._stopping.clear()

    def close(self, for_good: bool = False) -> None:
        """Stop a running job and close the store (open() opens it again unless `for_good`)."""
        self.stop_job(for_good)
        if self.store is not None:
            self.store.close()
            self.store = None

    def publish_contexts(self) -> None:
        """Every stored pair's context, e.g. on activation (late joiners read the latched ones)."""
        for domain, task, _ in self.store.summary():
            self.publish_context(domain, task)

    # ---- observations -----------------------------------------------------------------------
    def check_observation(self, domain: str, task: str, state, target) -> str | None:
        """None for an observation worth learning from, else why not (size, finiteness, plausible range)."""
        header = self._prior_header(domain)
        spec = self.spec(domain, header)
        if spec is None:
            return check_domain_and_task(domain, task, [d for d in self.known() if d != domain]) or (
                f"the general prior of {quote(domain)} carries no spec of that domain: retrain it with `dualdiff train "
                "--spec`")
        problem = check_domain_and_task(domain, task, [domain])
        if problem:
            return problem
        problem = check_vector("state", state, spec.state_dim) or check_vector("target", target, spec.target_dim)
        if problem:
            return (f"{problem} ({spec.name}: state {', '.join(spec.state_names)}; "
                    f"target {', '.join(spec.target_names)})")
        if header is None:  # no prior yet: only the absurd is refused now; training checks the range
            return check_absolute("state", state) or check_absolute("target", target)
        problem = self._implausible(self._plausible(domain, header), header, state, target)
        return problem and problem + "; refused, not stored (parameter limits.margin widens the range)"

    def known(self) -> list[str]:
        """The domains this robot knows now (spec_training.catalogue of model_dir)."""
        return list(catalogue(self.models.root))

    def spec(self, domain: str, header: dict | None = None) -> DomainSpec | None:
        """The domain's spec: its general prior's (the header's, or built-in), a built-in's, or None (unknown)."""
        header = self._prior_header(domain) if header is None else header
        return spec_in_metadata(domain, header["metadata"] if header else {}, str(self.models.general_path(domain)))

    def plausible(self, domain: str) -> PlausibleRange | None:
        """The domain's plausible range from its general prior's header, or None while it has no prior."""
        header = self._prior_header(domain)
        return None if header is None else self._plausible(domain, header)

    def _prior_header(self, domain: str) -> dict | None:
        if not NAME.fullmatch(domain):  # never a path from an unchecked name
            return None
        try:
            return read_header(self.models.general_path(domain))
        except CheckpointError:
            return None

    def _plausible(self, domain: str, header: dict) -> PlausibleRange:
        return PlausibleRange.from_header(domain, header, self.setting("limits.margin"))

    @staticmethod
    def _implausible(plausible: PlausibleRange, header: dict, state, target) -> str | None:
        """Why (state, target) lies outside the prior's range, or None; the target in the prior's frame.

        A robot stores world targets; a prior that learned in its spec's frame (an SE(2) frame turns
        with the furniture) keeps its target range there, so the target is turned into it first.
        """
        metadata = header.get("metadata", {})
        if metadata.get(SPEC_KEY):
            target = targets_in_model_frame(metadata, [state], [target])[0]
        return plausible.check_state(state) or plausible.check_target(state, target)

    def record(self, domain: str, task: str, state, target, stamp=None) -> tuple[int, int]:
        """Store durably; (id, total for this domain/task). May start a background retrain."""
        oid = self.store.add(domain, task, list(state), list(target), stamp)
        total = self.store.count(domain, task)
        self.publish_context(domain, task)  # before the acknowledgement: the next answer can use it
        self._new_observations[(domain, task)] += 1
        self._maybe_retrain(domain, task, total)
        return oid, total

    def list_rows(self, domain: str, task: str, any_task: bool, limit: int, offset: int) -> list:
        """Stored rows of a list request (ValueError for a bad selection, sqlite3.Error from the store)."""
        domain, task = selection(domain, task, any_task, self._listable())
        return self.store.list(domain, task, limit=limit, offset=offset)

    def forget(self, domain: str, task: str, any_task: bool, all_of_domain_task: bool, ids) -> int:
        """Forget a request's observations; how many. ValueError for a bad request, sqlite3.Error from the store."""
        domain, task = selection(domain, task, any_task, self._listable())
        touched = self._pairs(domain, task)  # before: a pair forgotten whole must hear its count 0
        if all_of_domain_task:
            if domain is None:
                raise ValueError("all_of_domain_task needs a domain: name the domain whose observations go")
            forgotten = self.store.forget(domain=domain, task=task)
        else:
            if not len(ids):
                raise ValueError("name the ids to forget (see list_observations), or set all_of_domain_task")
            forgotten = self.store.forget(ids=[int(i) for i in ids], domain=domain, task=task)
        for d, t in touched:
            self.publish_context(d, t)
        return forgotten

    def _listable(self) -> list[str]:
        """Domains a list or forget request may name: the known ones and any with stored observations."""
        return list(dict.fromkeys([*self.known(), *(d for d, _, _ in self.store.summary())]))

    def plausible_rows(self, domain: str, task: str) -> tuple[list, list[int]]:
        """(rows inside the plausible range, ids of the rest): what training and the home context use."""
        rows = self.store.list(domain, task)
        header = self._prior_header(domain)
        plausible = None if header is None else self._plausible(domain, header)
        keep = [r for r in rows if plausible is None or not self._implausible(plausible, header, r.state, r.target)]
        kept = {r.id for r in keep}
        return keep, [r.id for r in rows if r.id not in kept]

    def publish_context(self, domain: str, task: str) -> None:
        """Hand the home's observations, as the home-aware prior reads them, to hooks.context."""
        if domain not in FAMILY_DOMAINS:
            return
        rows, _ = self.plausible_rows(domain, task)
        self.hooks.context(domain, task, *home_context(domain, rows))

    def _pairs(self, domain: str | None, task: str | None) -> list[tuple[str, str]]:
        """The stored (domain, task) pairs a list/forget selection covers (None = any)."""
        return [(d, t) for d, t, _ in self.store.summary()
                if (domain is None or d == domain) and (task is None or t == task)]

    def _maybe_retrain(self, domain: str, task: str, total: int) -> None:
        every = self.setting("retrain_every")
        if not every or self._new_observations[(domain, task)] < every:
            return
        if total < self.setting("min_observations"):
            return
        job, _ = self.start(domain, task, "")
        if job is not None:
            self.log.info(f"{every} new observations of {domain}: retraining in the background")

    # ---- training ---------------------------------------------------------------------------
    def check_training(self, domain: str, task: str, method: str) -> str | None:
        """None when a job for (domain, task, method) can start, else why not and what to do."""
        problem = check_domain_and_task(domain, task, self.known())
        if problem:
            return problem
        if method and method not in SPECIALIZATION_METHODS:
            return (f"unknown method {method!r}: use '' (the node's default) or one of "
                    f"{', '.join(SPECIALIZATION_METHODS)}")
        have, need = self.store.count(domain, task), self.setting("min_observations")
        if have < need:
            return (f"only {have} observations stored for {label(domain, task)}: record at least "
                    f"{need} (parameter min_observations) with {self.record_service} first")
        try:
            read_header(self.models.general_path(domain))
        except CheckpointError as err:
            return f"the specialized model starts from the general prior, which is not usable: {err}; {TRAIN_HINT}"
        return None

    def start(self, domain: str, task: str, method: str, on_step=None) -> tuple[Job | None, str]:
        """(the job started in the background, "") or (None, why not: another job is running)."""
        with self._job_lock:
            if self.job is not None:
                j = self.job
                return None, f"job {j.job_id} ({j.domain}) is running, step {j.step}/{j.total}: try again when it ends"
            method = method or self.setting("method")
            job = Job(f"{domain}{'-' + task if task else ''}-{uuid.uuid4().hex[:8]}", domain, task, method,
                      on_step=on_step)
            self.job = job
            self._new_observations[(domain, task)] = 0
            self._thread = threading.Thread(target=self._run, args=(job,), name=f"train-{job.job_id}", daemon=True)
            self._thread.start()
        return job, ""

    def recipe(self, domain: str, general=None) -> Recipe:
        """The domain's on-robot recipe (its prior's spec's, if any) with the node's epoch and batch parameters."""
        spec = spec_of_model(general) if general is not None else self._spec_in_header(domain)
        return on_robot_recipe(domain, self.setting("fine_tune_epochs"), self.setting("scratch_epochs"),
                               self.setting("batch_size"), spec)

    def _spec_in_header(self, domain: str) -> DomainSpec | None:
        """The spec the domain's prior was trained from (None: no prior, or one from before specs)."""
        header = self._prior_header(domain)
        return self.spec(domain, header) if header and header["metadata"].get(SPEC_KEY) else None

    def _run(self, job: Job) -> None:
        """The training thread: the only place on-robot learning touches torch."""
        name = label(job.domain, job.task)
        try:
            states, targets, note = self.training_data(job)
            self._progress(job, "running", 0.0, f"{len(states)} observations, method {job.method}{note}")
            self.log.info(f"job {job.job_id}: {job.method} on {len(states)} observations of {name}{note}")
            general = self.models.load_general(job.domain)
            conditions = model_conditions(general, states)  # observations carry no map: "no map" features
            # a robot stores world targets; a prior that learned in its spec's frame trains its specialist there
            model = train_specialized(general, conditions, targets_for_model(general, states, targets),
                                      self.recipe(job.domain, general), job.method, job.task,
                                      seed=self.setting("seed"), progress=False,
                                      on_step=lambda step, total, loss: self._on_step(job, step, total, loss))
            spec = spec_of_model(general)
            if spec is not None:  # the specialist answers in the same frame, and says so in its header
                mark_spec(model, spec)
            path = self.models.specialized_path(job.domain, job.task)
            version = save(model, path)
            self.hooks.saved(job.domain, job.task, path)
            job.outcome, job.version, job.path = "succeeded", str(version), str(path)
            job.message = f"version {version} saved to {path}"
            self._progress(job, "succeeded", float("nan"), job.message)
            self.log.info(f"job {job.job_id}: specialized model {name} version {version} saved to {path}")
        except Stopped:
            if job.cancel.is_set():
                job.outcome, job.message = "canceled", f"job {job.job_id} canceled at step {job.step}; nothing saved"
                self._progress(job, "canceled", float("nan"), job.message)
            else:
                job.outcome, job.message = "stopped", f"job {job.job_id} abandoned: the node is deactivating"
            self.log.info(job.message)
        except Exception as err:  # report it; the node stays up
            job.outcome, job.message = "failed", f"{type(err).__name__}: {err}"
            self._progress(job, "failed", float("nan"), job.message)
            self.log.error(f"job {job.job_id} failed: {err!r}")
        finally:
            self.stats[f"jobs_{job.outcome or 'failed'}"] += 1
            with self._job_lock:
                self.job = None
            job.done.set()

    def training_data(self, job: Job):
        """(states, targets, note): the stored observations inside the plausible range; the rest are left out."""
        keep, left_out = self.plausible_rows(job.domain, job.task)
        if len(keep) < self.setting("min_observations"):
            raise ValueError(f"only {len(keep)} plausible observations (left out ids {left_out[:10]}): record more, "
                             "or forget the implausible ones with forget_observations")
        note = (f"; left out {len(left_out)} outside the plausible range (ids {left_out[:10]}; "
                "forget_observations removes them)") if left_out else ""
        return (np.array([r.state for r in keep], dtype=np.float64),
                np.array([r.target for r in keep], dtype=np.float64), note)

    def _on_step(self, job: Job, step: int, total: int, loss: float) -> None:
        if self._stopping.is_set() or job.cancel.is_set():
            raise Stopped()
        job.step, job.total = step, total
        self._progress(job, "running", loss)
        if job.on_step is not None:
            job.on_step(job, loss)

    def _progress(self, job: Job, state: str, loss: float, message: str = "") -> None:
        if not self._stopping.is_set():
            self.hooks.progress(job, state, loss, message)
