"""The home-aware prior in the placement service (ROS-free): when it answers, and what it reads."""
import shutil

import numpy as np
import pytest
from nodes_support import tiny_models

from dualdiff_ros import serving
from dualdiff_ros.diffusion.checkpoint import load_checkpoint
from dualdiff_ros.domains.homes import BoxRegion, home_domain
from dualdiff_ros.training_jobs import train_home_aware

STATE = np.array([1.0, 2.0, 0.5])


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The tiny cabinet models plus a quick home-aware prior, in a folder of this module's own."""
    root = tmp_path_factory.mktemp("home_aware_models")
    shutil.copytree(tiny_models(tmp_path_factory) / "cabinet", root / "cabinet")
    train_home_aware("cabinet", root, "quick", progress=False)
    return root


@pytest.fixture(scope="module")
def service(root):
    """The service with the answer check off: these tests are about the home-aware prior's own answers."""
    svc = serving.PlacementService(root, {**serving.defaults(), "check.enabled": False})
    store = svc.store
    svc.slots.put(("general", "cabinet", ""), store.load_general("cabinet"))
    svc.slots.put(("specialized", "cabinet", ""), store.load_specialized("cabinet"))
    svc.slots.put(("home_aware", "cabinet", ""), serving.load_for_slot(
        "home_aware", "cabinet", "", store.home_aware_path("cabinet"), root))
    return svc


def _observe(svc, n, region=BoxRegion((-1.0, -1.0, 0.0), (0.0, 0.0, 0.5)), task=""):
    home = home_domain("cabinet", region)
    rng = np.random.default_rng(n)
    c = home.sample_conditions(n, rng)
    svc.contexts.put_observations("cabinet", task, c, home.sample_specialized_targets(c, rng))


def test_the_home_aware_prior_answers_a_home_with_few_observations(service):
    _observe(service, 4)
    answer = service.answer("cabinet", "", "joint", STATE, 8, seed=3)
    assert answer.mode_used == "home_aware" and "4 observation" in answer.message
    assert answer.general_version == service.slots.get(("home_aware", "cabinet", "")).metadata["version"]
    assert len(answer.proposals) == 8 and (np.diff(answer.scores) <= 0).all()


def test_many_observations_go_back_to_the_composed_specialist(service):
    _observe(service, 130)  # above home_aware.max_observations (128)
    answer = service.answer("cabinet", "", "joint", STATE, 8, seed=3)
    assert answer.mode_used in ("joint", "specialized") and answer.specialized_version


def test_many_observations_but_no_specialist_yet_stay_with_the_home_aware_prior(service):
    specialist = service.slots.get(("specialized", "cabinet", ""))
    service.slots.put(("specialized", "cabinet", "shelf"), specialist)  # another task has one; this one not
    _observe(service, 130, task="attic_box")
    answer = service.answer("cabinet", "attic_box", "joint", STATE, 4, seed=3)
    assert answer.mode_used == "home_aware" and "130 observation" in answer.message


def test_no_observations_and_the_setting_off_keep_todays_answers(service):
    _observe(service, 0)
    assert service.answer("cabinet", "", "joint", STATE, 4, seed=1).mode_used != "home_aware"
    _observe(service, 4)
    service.configure({**serving.defaults(), "home_aware.enabled": False})
    try:
        assert service.answer("cabinet", "", "joint", STATE, 4, seed=1).mode_used != "home_aware"
    finally:
        service.configure({**serving.defaults(), "check.enabled": False})


def test_the_answer_reads_the_homes_observations(service):
    _observe(service, 6, BoxRegion((-1.0, -1.0, 0.0), (-0.5, -0.5, 0.3)))
    low = service.answer("cabinet", "", "home_aware", STATE, 16, seed=5).proposals
    _observe(service, 6, BoxRegion((0.5, 0.5, 0.6), (1.0, 1.0, 1.0)))
    high = service.answer("cabinet", "", "home_aware", STATE, 16, seed=5).proposals
    assert not np.allclose(low, high)  # same seed, same state: only the context differs


def test_asking_for_it_without_one_names_the_command(tmp_path_factory):
    svc = serving.PlacementService(tiny_models(tmp_path_factory))
    with pytest.raises(serving.Refused, match="--home-aware") as refused:
        svc.answer("cabinet", "", "home_aware", STATE, 4)
    assert refused.value.result == serving.RESULT_MODEL_UNAVAILABLE


def test_a_bad_context_is_refused():
    contexts = serving.HomeContexts()
    with pytest.raises(ValueError, match="finite"):
        contexts.put("cabinet", "", 3, [float("nan")] * 10)
    with pytest.raises(ValueError):
        contexts.put("cabinet", "", 3, [0.0] * 4)


def test_a_general_prior_is_refused_for_the_home_aware_slot(root):
    with pytest.raises(Exception, match="home_aware"):
        serving.load_for_slot("home_aware", "cabinet", "", root / "cabinet" / "general.safetensors", root)
    assert load_checkpoint(root / "cabinet" / "home_aware.safetensors").metadata["role"] == "home_aware"


def test_guidance_eases_once_the_home_has_many_observations(service):
    values = {**serving.defaults(), "check.enabled": False, "home_aware.guidance": 1.5,
              "home_aware.guidance_many": 1.2}
    service.configure(values)
    few, many = values["home_aware.guidance"], values["home_aware.guidance_many"]
    threshold = values["home_aware.many_observations"]
    assert serving.home_aware_guidance(threshold - 1, values) == few
    assert serving.home_aware_guidance(threshold, values) == many != few
    _observe(service, threshold)
    assert f"guidance {many:g}" in service.answer("cabinet", "", "joint", STATE, 4, seed=2).message
    _observe(service, 2)
    assert f"guidance {few:g}" in service.answer("cabinet", "", "joint", STATE, 4, seed=2).message


@pytest.fixture(scope="module")
def summary_service(tmp_path_factory):
    """A service whose home-aware prior reads the hand-made summary (count, min, max, mean)."""
    root = tmp_path_factory.mktemp("summary_models")
    shutil.copytree(tiny_models(tmp_path_factory) / "cabinet", root / "cabinet")
    train_home_aware("cabinet", root, "quick", progress=False, kind="summary")
    svc = serving.PlacementService(root, {**serving.defaults(), "check.enabled": False})
    svc.slots.put(("general", "cabinet", ""), svc.store.load_general("cabinet"))
    svc.slots.put(("home_aware", "cabinet", ""), serving.load_for_slot(
        "home_aware", "cabinet", "", svc.store.home_aware_path("cabinet"), root))
    return svc


def test_pseudo_observations_change_the_answer_and_say_so(summary_service):
    service = summary_service
    _observe(service, 4)
    answers = {}
    for pseudo in (0.0, 16.0):
        service.configure({**serving.defaults(), "home_aware.pseudo_observations": pseudo, "check.enabled": False})
        answers[pseudo] = service.answer("cabinet", "", "joint", STATE, 16, seed=4)
    # 4 observations: at most 4 pseudo-observations more, whatever the parameter asks
    assert answers[16.0].mode_used == "home_aware" and "+4 pseudo-observations" in answers[16.0].message
    assert "pseudo" not in answers[0.0].message
    assert not np.allclose(answers[0.0].proposals, answers[16.0].proposals)  # same seed: only the count told


def test_a_context_without_points_is_not_read_by_a_set_prior(service):
    """An older specialized node sends only the summary: the set-reading prior cannot answer from it."""
    service.contexts.put("cabinet", "old_node", 5, np.zeros(10))
    answer = service.answer("cabinet", "old_node", "joint", STATE, 4, seed=1)
    assert answer.mode_used != "home_aware" and "carries none" in answer.message


def test_the_checked_answer_says_which_way_answered_and_why(service, monkeypatch):
    from dualdiff_ros.learning import home_check

    calls = []
    real = home_check.check
    monkeypatch.setattr(home_check, "check", lambda *a, **k: calls.append(1) or real(*a, **k))
    service.configure(serving.defaults())
    try:
        _observe(service, 12)
        first = service.answer("cabinet", "", "joint", STATE, 8, seed=3)
        assert "checked against this home's 12 observation(s)" in first.message
        assert first.mode_used in ("home_aware", "joint", "specialized", "general")
        assert all(f"{way} " in first.message for way in ("home_aware", "joint", "specialized", "general"))
        service.answer("cabinet", "", "joint", STATE, 8, seed=4)
        assert len(calls) == 1  # the verdict is kept while the home and the models are the same
        _observe(service, 13)
        service.answer("cabinet", "", "joint", STATE, 8, seed=4)
        assert len(calls) == 2  # a new observation: checked again
        _observe(service, 3)    # below check.min_observations: unchecked
        assert "checked" not in service.answer("cabinet", "", "joint", STATE, 8, seed=4).message
    finally:
        service.configure({**serving.defaults(), "check.enabled": False})


def test_a_check_that_cannot_draw_answers_from_the_prior_and_says_so(service, monkeypatch):
    from dualdiff_ros.learning import home_check

    def broken(*args, **kwargs):
        raise RuntimeError("a way could not draw")

    monkeypatch.setattr(home_check, "score_way", broken)
    service.configure(serving.defaults())
    try:
        _observe(service, 9)
        answer = service.answer("cabinet", "", "joint", STATE, 4, seed=3)
        assert answer.mode_used == "home_aware" and "the answer check failed" in answer.message
        assert np.isfinite(answer.proposals).all()
    finally:
        service.configure({**serving.defaults(), "check.enabled": False})


def test_a_home_of_two_shelves_is_read_place_by_place_and_says_so(service, monkeypatch):
    """home_aware.places: each shelf's share of the proposals reads that shelf's observations only (one batch)."""
    from dualdiff_ros.diffusion.proposer import Proposer
    from dualdiff_ros.domains.homes import MixtureRegion
    from dualdiff_ros.learning.in_context import MAX_CONTEXT

    low, high = BoxRegion((-0.8, -0.8, 0.10), (0.8, 0.6, 0.14)), BoxRegion((-0.6, -0.8, 0.70), (0.7, 0.8, 0.74))
    _observe(service, 40, MixtureRegion((low, high), (0.25, 0.75)))
    points = service.contexts.get("cabinet", "").points
    on_high = int(high.contains(points).sum())
    asked = []
    for name in ("propose", "propose_rows"):
        real = getattr(Proposer, name)
        monkeypatch.setattr(Proposer, name, lambda self, *a, _real=real, _name=name, **k: asked.append((_name, a))
                            or _real(self, *a, **k))
    answer = service.answer("cabinet", "", "joint", STATE, 32, seed=3)
    assert answer.mode_used == "home_aware" and "in 2 places read one by one" in answer.message
    assert [name for name, _ in asked] == ["propose_rows"]
    rows = asked[0][1][1]
    counts = np.round(rows[:, 3] * MAX_CONTEXT).astype(int)       # each row's set: how many points it reads
    high_share = round(32 * on_high / 40)
    assert sorted(np.unique(counts, return_counts=True)[1].tolist()) == sorted([high_share, 32 - high_share])
    assert set(counts.tolist()) == {on_high, 40 - on_high}
    assert len(answer.proposals) == 32 and (np.diff(answer.scores) <= 0).all()
    asked.clear()
    service.configure({**serving.defaults(), "check.enabled": False, "home_aware.places": False})
    try:
        answer = service.answer("cabinet", "", "joint", STATE, 32, seed=3)
        assert [name for name, _ in asked] == ["propose"] and "places" not in answer.message
    finally:
        service.configure({**serving.defaults(), "check.enabled": False})
