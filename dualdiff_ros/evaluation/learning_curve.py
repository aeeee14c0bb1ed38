"""The on-robot learning curve: proposal quality against the number of observations, beside the Bayes limit.

A robot in a new home records where it found things, one observation at a time. For each home
(the thesis's, then homes drawn from the family, domains/homes.py) and each N of
`observations`, the first N of one sequence of that home's observations train a specialist from
scratch and a fine-tune of the general prior; every row is then asked for `looks` proposals for
each of `test_conditions` held-out furniture poses:

- general: the prior alone (N-independent: the cold start);
- scratch, fine_tuned: one specialist alone;
- proposer: what the placement service serves (the prior composed with the fine-tune; at N = 0
  the prior, as the service answers a joint request with no specialist);
- proposer_cut<f>: the same with the prior guiding only above f of the noise schedule (how much
  the prior should say may depend on N);
- home_aware[_w<g>]: the home-aware prior (learning/in_context.py) given the N observations in its
  condition, no training per home; guidance g > 1 sharpens it towards them;
- home_aware[_w<g>]_p<tau>: the same told of tau pseudo-observations more (a tempered posterior,
  learning/in_context.py `with_pseudo_observations`);
- served: what the placement service answers a joint request with its default parameters
  (serving.py): the home-aware prior at the guidance and pseudo-observations it uses at N while
  N <= home_aware.max_observations, else the proposer;
- home_aware_tuned[_w<g>], home_aware_joint[_w<g>]: a fine-tune *of the home-aware prior* on the N
  observations (each row's condition carrying the home's summary), alone and composed with the
  prior it came from (the two share the condition, the normalizers and the guidance block);
- home_aware_summary[...]: the same rows for a home-aware prior reading the hand-made summary
  instead of the set (the measured alternative; `context_kinds`);
- limit: the exact Bayes posterior predictive of the home family (evaluation/bayes_limit.py), for
  the one-box family only; labelled_parts: each place's own predictive told which observations came
  from it (bayes_limit.labelled_part_predictive; box and multi-place homes: more than a robot can
  know, for judging how far a target is from what the observations allow); oracle: samples of the
  home's true region (every family).

Homes come from a family (domains/homes.py: "box", the thesis's; "multi", several places; "held_out",
shape kinds no model trained on); coverage_vs_oracle divides a row's coverage by the oracle's.

Metrics: accuracy (in the home's region), coverage (Naeem et al., k = 5, against the home's own
distribution) and looks-to-find: the robot looks at the proposals in the order returned (best
score first) until one lies in the home's region, at most `looks`; a miss costs `looks`.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import serving
from ..diffusion.proposer import Proposer
from ..domains.homes import FAMILIES, FAMILY_DOMAINS, homes
from ..learning import home_check, places
from ..learning.in_context import context_conditions, model_context_kind, train_prior
from ..model_store import Recipe, train_general, train_specialized
from ..recipes import HOME_AWARE_FLEET
from ..seeds import stream
from ..serving import distinct, ranked
from . import metrics
from .bayes_limit import labelled_part_predictive, predictive
from .report import markdown_table

OBSERVATIONS = (0, 1, 2, 4, 8, 16, 32, 64, 128)
ROWS = ("general", "scratch", "fine_tuned", "proposer", "home_aware_summary", "home_aware", "served", "limit",
        "labelled_parts", "oracle")
LABELLED_FAMILIES = ("box", "multi")  # homes made of boxes and discs only: the labelled-part reference
METRICS = ("accuracy", "coverage", "coverage_vs_oracle", "looks_to_find")
DISTINCT_OVERSAMPLE = 4.0  # the placement service's distinct.oversample


@dataclass
class CurveSettings:
    """Full: 5 homes x 9 N, 200 test poses x 10 looks; `quick()` for tests."""

    domain: str = "cabinet"
    homes: int = 5
    observations: tuple = OBSERVATIONS
    test_conditions: int = 200
    looks: int = 10
    reference: int = 2000              # samples of the home's own distribution, for coverage
    general_size: int = 55_398
    seed: int = 0
    cutoffs: tuple = ()                # extra proposer rows: general_min_t_fraction values
    # The home-aware prior (learning/in_context.py): rows "home_aware" (guidance 1) and
    # "home_aware_w<g>" for each further guidance scale; () = not trained.
    context_guidance: tuple = ()
    context_pseudo: tuple = ()         # further home-aware rows "..._p<tau>" with tau pseudo-observations
    context_places: bool = False       # also rows "home_aware_places[_w<g>]": the prior read place by place
    context_tuning: bool = False       # also the rows of a fine-tune of the home-aware prior
    context_model: str | None = None   # a saved home-aware prior of this domain to use instead of training one
    context_kinds: tuple = ("set",)    # home-aware priors: "set" (rows home_aware*), "summary" (home_aware_summary*)
    summary_model: str | None = None   # a saved summary-reading home-aware prior (context_kinds with "summary")
    general_model: str | None = None   # a saved general prior of this domain to use instead of training one
    family: str = "box"                # the homes measured (domains/homes.py FAMILIES)
    fleet_family: str = "fleet"        # the homes a home-aware prior trains on
    skip_scratch: bool = False         # leave out the from-scratch specialist (time)
    min_separation: float = 0.0        # > 0: "<row>_distinct" rows, the request field min_separation
    # the home-aware prior's fleet data when the curve trains one: the full recipe's (recipes.HOME_AWARE_FLEET)
    fleet_homes: int = HOME_AWARE_FLEET["full"][0]
    fleet_points: int = HOME_AWARE_FLEET["full"][1]
    fleet_rows_per_home: int = HOME_AWARE_FLEET["full"][2]
    recipe: Recipe = field(default_factory=Recipe)
    context_recipe: Recipe | None = None  # the home-aware prior's size and training (None: `recipe`)
    progress: bool = True

    def __post_init__(self):
        if self.domain not in FAMILY_DOMAINS:
            raise ValueError(f"learning curve of {self.domain!r}: use one of {FAMILY_DOMAINS}")
        if self.family not in FAMILIES or self.fleet_family not in FAMILIES:
            raise ValueError(f"home families {self.family!r} / {self.fleet_family!r}: use one of {FAMILIES}")
        if not self.observations or min(self.observations) < 0:
            raise ValueError(f"observations {self.observations}: give counts >= 0")

    @classmethod
    def quick(cls, **overrides) -> "CurveSettings":
        from ..recipes import recipe
        return replace(cls(homes=2, observations=(0, 2, 8), test_conditions=30, looks=6, reference=300,
                           general_size=3000, recipe=recipe("quick"), progress=False, fleet_homes=60,
                           fleet_points=24, fleet_rows_per_home=20), **overrides)


def looks_to_find(inside: np.ndarray, cap: int) -> np.ndarray:
    """Per condition, looks until the first proposal inside the region; `cap` when none of the first cap is."""
    inside = np.asarray(inside, dtype=bool)[:, :cap]
    return np.where(inside.any(axis=1), inside.argmax(axis=1) + 1, cap).astype(float)


def score_samples(home, conditions: np.ndarray, samples: np.ndarray, reference_local: np.ndarray,
                  looks: int) -> dict:
    """Accuracy, coverage and looks-to-find of samples ``[n, k, d]`` in the order they would be looked at."""
    n, k, d = samples.shape
    flat_c = np.repeat(conditions, k, axis=0)
    inside = home.in_specialized_region(flat_c, samples.reshape(-1, d)).reshape(n, k)
    local = home.local_frame(flat_c, samples.reshape(-1, d))
    return {"accuracy": float(inside.mean()), "coverage": metrics.coverage(reference_local, local),
            "looks_to_find": float(looks_to_find(inside, looks).mean())}


def propose_all(proposer: Proposer, general, specialist, conditions: np.ndarray, k: int, seed: int,
                min_separation: float = 0.0) -> np.ndarray:
    """``[n, k, d]`` proposals as served, best first: joint with both models, else the one given alone.

    With `min_separation` > 0, as a request with that field: DISTINCT_OVERSAMPLE x k drawn, the
    best-scored ones at least that far apart first (serving.distinct), then the rest in score order
    (what a robot would get by asking again), so every row still has k looks.
    """
    mode = "joint" if general is not None and specialist is not None else \
        ("general" if specialist is None else "specialized")
    drawn = int(np.ceil(k * DISTINCT_OVERSAMPLE)) if min_separation > 0 else k
    out = []
    for i, c in enumerate(conditions):
        p = proposer.propose(general, specialist, c, drawn, mode, seed + i)
        targets, scores = ranked(p.targets, p.scores)
        if min_separation > 0:
            kept, _ = distinct(targets, scores, k, min_separation)
            rest = [t for t in targets if not any(np.array_equal(t, q) for q in kept)]
            targets = np.concatenate([kept, np.asarray(rest).reshape(-1, targets.shape[1])])[:k]
        out.append(targets)
    return np.stack(out)


def limit_samples(home, domain: str, observed_local: np.ndarray, conditions: np.ndarray, k: int, seed: int):
    """The Bayes predictive's proposals ``[n, k, d]`` (in random order: it has no better one)."""
    rng = np.random.default_rng(seed)
    local = predictive(domain, observed_local, len(conditions) * k, rng)
    return home.from_region_frame(np.repeat(conditions, k, axis=0), local).reshape(len(conditions), k, -1)


def labelled_samples(home, domain: str, observed_local: np.ndarray, conditions: np.ndarray, k: int,
                     seed: int) -> np.ndarray | None:
    """The labelled-part reference's proposals ``[n, k, d]`` (bayes_limit.labelled_part_predictive), or None."""
    local = labelled_part_predictive(domain, home.region, observed_local, len(conditions) * k,
                                     np.random.default_rng(seed))
    if local is None:
        return None
    return home.from_region_frame(np.repeat(conditions, k, axis=0), local).reshape(len(conditions), k, -1)


def home_aware_samples(model, home, observed_local, conditions, k, seed, guidance: float,
                       tuned=None, joint: bool = False, pseudo: float = 0.0, by_place: bool = False) -> np.ndarray:
    """Proposals given the home's observations (and `pseudo` pseudo-observations), best first.

    The home-aware prior alone, its fine-tune `tuned` alone, or (`joint`) the two composed;
    `by_place`: the prior alone read place by place, as the placement service does (home_aware.places).
    """
    kind = model_context_kind(model)
    if by_place and tuned is None and kind == "set":
        labels = places.several(observed_local)
        if labels is not None:
            return place_samples(model, observed_local, labels, conditions, k, seed, guidance)
    conds = context_conditions(conditions, observed_local, pseudo, kind)
    general, specialist = (model, tuned) if joint else (None, tuned if tuned is not None else model)
    return propose_all(Proposer().with_guidance(guidance), general, specialist, conds, k, seed)


def place_samples(model, observed_local, labels, conditions, k: int, seed: int, guidance: float) -> np.ndarray:
    """``[n, k, d]`` proposals of a set-reading prior read place by place, as the service draws them, best first."""
    proposer = Proposer().with_guidance(guidance)
    out = []
    for i, c in enumerate(conditions):
        p = proposer.propose_rows(model, serving.place_conditions(c, observed_local, labels, k), seed + i)
        out.append(ranked(p.targets, p.scores)[0])
    return np.stack(out)


def tune_home_aware(model, home, c, t, settings: "CurveSettings", seed: int):
    """The home-aware prior fine-tuned on a home's N observations, each row conditioned on all N."""
    conds = context_conditions(c, home.region_frame(c, t), kind=model_context_kind(model))
    return train_specialized(model, conds, t, settings.recipe, "fine_tune", task=home.name, seed=seed, progress=False)


def train_home_aware_prior(settings: CurveSettings, kind: str = "set"):
    """The home-aware prior on fleet homes (one per curve run and kind), or the saved one asked for."""
    s = settings
    saved = s.context_model if kind == "set" else s.summary_model
    if saved:
        model = load_home_aware_prior(saved, s.domain)
        if model_context_kind(model) != kind:
            raise ValueError(f"{saved} reads a {model_context_kind(model)} context, not a {kind}")
        return model
    return train_prior(s.domain, s.context_recipe or s.recipe, (s.fleet_homes, s.fleet_points, s.fleet_rows_per_home),
                       s.seed, kind, s.fleet_family, s.progress)


def load_home_aware_prior(path, domain: str):
    """A saved home-aware prior (`dualdiff train --home-aware`), checked to be one and of `domain`."""
    from ..diffusion.checkpoint import load_checkpoint
    model = load_checkpoint(path)
    found = model.metadata.get("domain")
    if found != domain or "context" not in model.metadata:
        raise ValueError(f"{path} is a {found} model{'' if 'context' in model.metadata else ' without context'}: "
                         f"give a home-aware prior of {domain} (`dualdiff train --domain {domain} --home-aware`)")
    return model


def observation_sequence(home, index: int, seed: int, count: int):
    """The home's observations in the order the robot makes them: (conditions, targets), at least 128 long.

    Drawn at a fixed length (128, or `count` when larger), so the first N are the same whichever
    counts up to 128 a run asks for: N = 8 of a run up to 16 is N = 8 of a run up to 128.
    """
    rng = np.random.default_rng(stream(seed, "observations") + 1000 * index)
    conditions = home.sample_conditions(max(count, max(OBSERVATIONS)), rng)
    return conditions, home.sample_specialized_targets(conditions, rng)


def held_out_poses(home, index: int, seed: int, count: int, reference: int):
    """Held-out furniture poses of the home, and `reference` true locations at them (in the home's frame).

    The reference samples the home's own distribution at the same poses, for coverage.
    """
    poses = home.sample_conditions(count, np.random.default_rng(stream(seed, "test") + 1000 * index))
    rng = np.random.default_rng(stream(seed, "reference") + 1000 * index)
    at = poses[rng.integers(0, len(poses), reference)]
    return poses, home.local_frame(at, home.sample_specialized_targets(at, rng))


def run_home(home, index: int, general, settings: CurveSettings, home_aware=None,
             summary_aware=None) -> list[dict]:
    """Every row at every N for one home (`home_aware`: the set-reading prior; `summary_aware`: the summary's)."""
    s = settings
    obs_c, obs_t = observation_sequence(home, index, s.seed, max(s.observations))
    test, reference_local = held_out_poses(home, index, s.seed, s.test_conditions, s.reference)
    sampling = stream(s.seed, "sampling") + 1000 * index
    base = Proposer()
    rows = []
    general_scores = score_samples(home, test, propose_all(base, general, None, test, s.looks, sampling),
                                   reference_local, s.looks)
    oracle = score_samples(home, test, oracle_samples(home, test, s.looks, sampling), reference_local, s.looks)
    for n in s.observations:
        start = time.time()
        found = {"general": general_scores}
        c, t = obs_c[:n], obs_t[:n]
        trained = {}
        if n == 0:
            found["proposer"] = general_scores  # the cold start: the service answers from the prior
        else:
            for name, method in (("scratch", "scratch"), ("fine_tuned", "fine_tune"))[int(s.skip_scratch):]:
                trained[name] = train_specialized(general, c, t, s.recipe, method, task=home.name,
                                                  seed=stream(s.seed, f"train_{name}") + 1000 * index + n,
                                                  progress=False)
                found[name] = score_samples(home, test, propose_all(base, None, trained[name], test, s.looks,
                                                                           sampling), reference_local, s.looks)
            found["proposer"] = score_samples(home, test, propose_all(base, general, trained["fine_tuned"], test,
                                                                      s.looks, sampling), reference_local, s.looks)
            for cut in s.cutoffs:
                cut_proposer = replace(base, composition=replace(base.composition, general_min_t_fraction=cut))
                found[f"proposer_cut{cut:g}"] = score_samples(
                    home, test, propose_all(cut_proposer, general, trained["fine_tuned"], test, s.looks, sampling),
                    reference_local, s.looks)
        tuned = None
        if home_aware is not None and n > 0 and s.context_tuning:
            tuned = tune_home_aware(home_aware, home, c, t, s, stream(s.seed, "train_home_aware") + 1000 * index + n)
        variants = {"home_aware": {}}
        if tuned is not None:
            variants.update(home_aware_tuned={"tuned": tuned}, home_aware_joint={"tuned": tuned, "joint": True})
        for prefix, model in (("home_aware", home_aware), ("home_aware_summary", summary_aware)):
            for w in s.context_guidance if model is not None else ():
                for pseudo in (0.0, *s.context_pseudo):
                    suffix = ("" if w == 1 else f"_w{w:g}") + (f"_p{pseudo:g}" if pseudo else "")
                    for name, how in variants.items() if model is home_aware else {"home_aware": {}}.items():
                        found[name.replace("home_aware", prefix) + suffix] = score_samples(
                            home, test, home_aware_samples(model, home, home.region_frame(c, t), test, s.looks,
                                                           sampling, w, pseudo=pseudo, **how), reference_local, s.looks)
                if model is home_aware and s.context_places and n > 0:
                    found["home_aware_places" + ("" if w == 1 else f"_w{w:g}")] = score_samples(
                        home, test, home_aware_samples(model, home, home.region_frame(c, t), test, s.looks, sampling,
                                                       w, by_place=True), reference_local, s.looks)
        if home_aware is not None:
            found["served"], found_way = served_scores(home, test, reference_local, s, sampling, home_aware,
                                                       home.region_frame(c, t), general, trained.get("fine_tuned"),
                                                       found["proposer"])
        if s.min_separation > 0:
            found.update(distinct_rows(home, test, reference_local, s, sampling, general, trained,
                                       home_aware, home.region_frame(c, t)))
        if s.family == "box":
            found["limit"] = score_samples(home, test, limit_samples(home, s.domain, home.region_frame(c, t), test,
                                                                     s.looks, sampling), reference_local, s.looks)
        if s.family in LABELLED_FAMILIES and n > 0:
            labelled = labelled_samples(home, s.domain, home.region_frame(c, t), test, s.looks, sampling)
            if labelled is not None:
                found["labelled_parts"] = score_samples(home, test, labelled, reference_local, s.looks)
        found["oracle"] = oracle
        for name, scores in found.items():
            extra = {"answered_by": found_way} if name == "served" and home_aware is not None else {}
            rows.append({"home": home.name, "observations": n, "row": name, **scores, **extra,
                         "coverage_vs_oracle": scores["coverage"] / max(oracle["coverage"], 1e-9)})
        if s.progress:
            summary = ", ".join(f"{k} {v['accuracy']:.2f}/{v['coverage']:.2f}/{v['looks_to_find']:.1f}"
                                for k, v in found.items())
            print(f"[{home.name} N={n} {time.time() - start:.0f} s] {summary}", flush=True)
    return rows


def oracle_samples(home, conditions: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``[n, k, d]`` samples of the home's true region: what a perfect answer would propose."""
    rng = np.random.default_rng(seed + 7)
    flat = np.repeat(conditions, k, axis=0)
    return home.sample_specialized_targets(flat, rng).reshape(len(conditions), k, -1)


def checked_way(home_aware, observed_local, state, general, specialist, seed: int) -> tuple[str, dict]:
    """The way the placement service answers a joint request at these observations (its own functions).

    serving.home_aware_answers gates the home-aware prior; the answer check (learning/home_check.py)
    chooses between it and the other ways exactly as the service does, drawing at `state`.
    """
    values = serving.defaults()
    n = len(observed_local)
    if not serving.home_aware_answers(n, home_aware is not None, specialist is not None, values):
        return "proposer", {}
    if n < int(values["check.min_observations"]) or not bool(values["check.enabled"]):
        return serving.HOME_AWARE, {}
    context = serving.HomeContext(n, np.zeros(serving.SUMMARY_SIZE), observed_local)
    ways = serving.answer_ways(home_aware.metadata.get("domain", "cabinet"), state, home_aware, context, general,
                               specialist, serving.proposer_from(values), values)
    if len(ways) < 2:
        return serving.HOME_AWARE, {}
    verdict = home_check.check(ways, observed_local, seed, serving.HOME_AWARE, float(values["check.margin"]))
    return verdict.chosen, verdict.scores


def served_samples(home_aware, home, observed_local, conditions, k: int, seed: int, general=None,
                   specialist=None) -> tuple[np.ndarray | None, str, dict]:
    """(proposals as the service answers at these N observations (None: the proposer), the way, check scores)."""
    values = serving.defaults()
    way, scores = checked_way(home_aware, observed_local, conditions[0], general, specialist, seed)
    if way == "proposer":
        return None, way, scores
    if way == serving.HOME_AWARE:
        guidance = serving.home_aware_guidance(len(observed_local), values)
        pseudo = float(values["home_aware.pseudo_observations"])
        samples = home_aware_samples(home_aware, home, observed_local, conditions, k, seed, guidance, pseudo=pseudo,
                                     by_place=bool(values["home_aware.places"]))
        return samples, way, scores
    pair = {"joint": (general, specialist), "specialized": (None, specialist), "general": (general, None)}[way]
    return propose_all(Proposer(), *pair, conditions, k, seed), way, scores


def served_scores(home, test, reference_local, s: CurveSettings, sampling: int, home_aware, observed_local,
                  general, specialist, proposer_scores: dict) -> tuple[dict, str]:
    """The row the placement service serves at these N observations, and its way (its check's scores in the row)."""
    samples, way, checked = served_samples(home_aware, home, observed_local, test, s.looks, sampling, general,
                                           specialist)
    scores = proposer_scores if samples is None else score_samples(home, test, samples, reference_local, s.looks)
    return {**scores, "check_scores": checked}, way


def distinct_rows(home, test, reference_local, s: CurveSettings, sampling: int, general, trained: dict,
                  home_aware, observed_local) -> dict:
    """Rows asked for proposals at least `s.min_separation` apart (do spread looks find the object sooner).

    The proposer (the prior alone at N = 0) and the home-aware prior at its largest guidance.
    """
    specialist = trained.get("fine_tuned")
    out = {"proposer_distinct": score_samples(home, test, propose_all(Proposer(), general, specialist, test, s.looks,
                                                                      sampling, s.min_separation),
                                              reference_local, s.looks)}
    if home_aware is not None and s.context_guidance:
        w = max(s.context_guidance)
        conds = context_conditions(test, observed_local, kind=model_context_kind(home_aware))
        name = "home_aware_distinct" if w == 1 else f"home_aware_w{w:g}_distinct"
        out[name] = score_samples(home, test, propose_all(Proposer().with_guidance(w), None, home_aware, conds, s.looks,
                                                          sampling, s.min_separation), reference_local, s.looks)
    return out


SWEEP_MARGINS = (0.0, 0.25, 0.5, 1.0, 2.0, 1e9)
WAY_ROWS = {"home_aware": "home_aware", "joint": "proposer", "specialized": "fine_tuned", "general": "general"}


def served_row(way: str, observations: int) -> str:
    """The curve's row that measures `way` as served at N: the home-aware prior at the served guidance."""
    if way != serving.HOME_AWARE:
        return WAY_ROWS[way]
    values = serving.defaults()
    guidance = serving.home_aware_guidance(observations, values)
    name = "home_aware_places" if bool(values["home_aware.places"]) else "home_aware"
    return name if guidance == 1 else f"{name}_w{guidance:g}"


def served_at_margin(rows: list[dict], margin: float) -> list[dict]:
    """`rows` with each checked served row replaced by the way the check chooses at `margin`.

    Each served row keeps its check's scores per way; the way another margin would have chosen is
    looked up among the same run's and home's rows (the home-aware prior at the served guidance, else at 1;
    proposer = joint, fine_tuned = specialized, general); served rows without scores (N below the check, or
    its way unmeasured) stay.
    """
    by = {(r.get("run"), r["home"], r["observations"], r["row"]): r for r in rows}
    out = []
    for r in rows:
        scores = r.get("check_scores") if r["row"] == "served" else None
        if scores:
            best = max(scores, key=scores.get)
            way = best if scores[best] - scores.get("home_aware", -np.inf) >= margin else "home_aware"
            key = (r.get("run"), r["home"], r["observations"])
            served = served_row(way, r["observations"])  # else the same without places, else at guidance 1
            chosen = (by.get((*key, served)) or by.get((*key, served.replace("_places", "")))
                      or by.get((*key, WAY_ROWS[way])))
            if chosen is not None:
                r = {**chosen, "row": "served", "answered_by": way, "check_scores": scores, "replayed": True}
        out.append(r)
    return out


def margin_sweep(rows: list[dict], margins) -> list[dict]:
    """What the served row would have scored with each check.margin: per (N, margin), mean metrics over homes.

    For choosing the margin on validation homes (`served_at_margin` replays the check).
    """
    out = []
    for m in margins:
        per_n: dict = {}
        for r in served_at_margin(rows, m):
            if r.get("replayed"):
                per_n.setdefault(r["observations"], []).append(r)
        for n, chosen in sorted(per_n.items()):
            out.append({"observations": n, "margin": m, "homes": len(chosen),
                        **{k: float(np.mean([c[k] for c in chosen])) for k in METRICS}})
    return out


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and sd over homes per (N, row)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["observations"], r["row"]), []).append(r)
    out = []
    for (n, name), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], _row_order(kv[0][1]))):
        entry = {"observations": n, "row": name, "homes": len(rs)}
        for key in METRICS:
            vals = [r[key] for r in rs]
            entry[key] = (float(np.mean(vals)), float(np.std(vals)))
        out.append(entry)
    return out


def _row_order(name: str) -> int:
    return ROWS.index(name) if name in ROWS else len(ROWS) - 1


def run_learning_curve(output_dir, settings: CurveSettings | None = None) -> dict:
    """Train the prior once, then every home's curve; results.json, results.md and the plot."""
    s = settings or CurveSettings()
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    start = time.time()
    family = homes(s.domain, s.homes, stream(s.seed, "homes"), s.family)
    data = family[0].general_dataset(s.general_size, stream(s.seed, "general_data"))
    if s.general_model:
        from ..diffusion.checkpoint import load_checkpoint
        general = load_checkpoint(s.general_model)
    else:
        general = train_general(s.domain, data.conditions, data.targets, s.recipe, stream(s.seed, "train_general"),
                                s.progress)
    home_aware = train_home_aware_prior(s, "set") if s.context_guidance and "set" in s.context_kinds else None
    summary_aware = (train_home_aware_prior(s, "summary") if s.context_guidance and "summary" in s.context_kinds
                     else None)
    rows = []
    for i, home in enumerate(family):
        rows += run_home(home, i, general, s, home_aware, summary_aware)
        result = {"study": "learning_curve", "domain": s.domain, "family": s.family, "settings": asdict(s),
                  "homes": [{"name": h.name, "region": asdict(h.region)} for h in family],
                  "rows": rows, "summary": summarize(rows), "seconds": round(time.time() - start, 1)}
        write_results(output, result)
    return result


def write_results(output: Path, result: dict) -> None:
    (output / "results.json").write_text(json.dumps(result, indent=1, default=str))
    homes_done = sorted({r["home"] for r in result["rows"]})
    header = (f"# learning curve: {result['domain']}\n\nHomes {homes_done}; mean ± sd over homes; "
              f"looks-to-find capped at {result['settings']['looks']}.\n\n")
    table = markdown_table(result["summary"], ["observations", "row", *METRICS])
    ways: dict = {}
    for r in result["rows"]:
        if "answered_by" in r:
            ways.setdefault(r["observations"], []).append(r["answered_by"])
    served = "".join(f"- N = {n}: " + ", ".join(f"{w} x{v.count(w)}" for w in sorted(set(v))) + "\n"
                     for n, v in sorted(ways.items()))
    footer = "\nThe served row answered from:\n" + served if served else ""
    sweep = margin_sweep(result["rows"], SWEEP_MARGINS)
    if sweep:
        footer += ("\nThe served row at other check.margin values (1e+09 = never leave the home-aware prior):\n\n"
                   + markdown_table(sweep, ["observations", "margin", "homes", *METRICS]))
    (output / "results.md").write_text(header + table + footer)
    plot_curves(result["summary"], output / f"learning_curve_{result['domain']}.png", result["domain"])


def plot_curves(summary: list[dict], path: Path, domain: str) -> None:
    """Accuracy, coverage and looks-to-find against N, one line per row with a ±sd band."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    names = list(dict.fromkeys(r["row"] for r in summary))
    for ax, key in zip(axes, METRICS):
        for name in names:
            pts = [r for r in summary if r["row"] == name]
            x = np.array([max(r["observations"], 0.5) for r in pts])  # N = 0 drawn at 0.5 on the log axis
            mean = np.array([r[key][0] for r in pts])
            sd = np.array([r[key][1] for r in pts])
            style = {"color": "k", "linestyle": "--"} if name == "limit" else {}
            (line,) = ax.plot(x, mean, marker="o", markersize=3, label=name, **style)
            ax.fill_between(x, mean - sd, mean + sd, alpha=0.12, color=line.get_color())
        ax.set_xscale("log", base=2)
        ax.set_xlabel("observations N (0 drawn at 0.5)")
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{domain}: quality against the robot's observations (bands: ± sd over homes)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
