"""Domain specs: loading and validation (errors name file, field and fix), frames, built-in specs."""
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from dualdiff_ros.domains import Cabinet, RoundTable
from dualdiff_ros.domains.spec import BUILTIN_SPECS, DomainSpec, SpecError, builtin_spec, load_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mug_counter" / "spec.yaml"

MUG = {
    "name": "mug_counter", "description": "mugs on a counter",
    "state": [{"name": "x", "unit": "m", "range": [-10, 10]}, {"name": "y", "unit": "m", "range": [-10, 10]},
              {"name": "yaw", "unit": "rad", "range": [-3.1416, 3.1416]}, {"name": "length", "unit": "m"}],
    "target": [{"name": "x", "unit": "m"}, {"name": "y", "unit": "m"}],
    "frame": {"type": "se2", "origin": ["x", "y"], "yaw": "yaw"},
}


def write(tmp_path, data, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_example_spec_loads_with_its_sizes_and_frame():
    spec = load_spec(EXAMPLE)
    assert (spec.name, spec.state_dim, spec.target_dim, spec.frame) == ("mug_counter", 4, 2, "se2")
    assert spec.state_columns == ["state.x", "state.y", "state.yaw", "state.length"]
    assert spec.target_columns == ["target.x", "target.y"]
    assert not spec.relative_prefix  # se2: the model learns in the counter's rotated frame


def test_se2_rotates_targets_with_the_heading():
    spec = DomainSpec.from_dict(MUG)
    # A counter at (1, 2) turned a quarter turn: a mug 1 m further along world +y is 1 m along the counter.
    local = spec.to_local([[1.0, 2.0, math.pi / 2, 2.0]], [[1.0, 3.0]])
    np.testing.assert_allclose(local, [[1.0, 0.0]], atol=1e-12)
    rng = np.random.default_rng(0)
    states = np.column_stack([rng.uniform(-5, 5, (50, 2)), rng.uniform(-math.pi, math.pi, 50), np.ones(50)])
    targets = rng.uniform(-5, 5, (50, 2))
    np.testing.assert_allclose(spec.from_local(states, spec.to_local(states, targets)), targets, atol=1e-12)
    # The same local point is the same place on every counter, however it is turned.
    world = spec.from_local(states, np.tile([[0.5, 0.2]], (50, 1)))
    np.testing.assert_allclose(np.hypot(*(world - states[:, :2]).T), math.hypot(0.5, 0.2), atol=1e-12)


def test_translation_and_absolute_frames():
    spec = builtin_spec("cabinet")
    assert spec.relative_prefix  # origin = the state's first three fields: the model's relative_targets
    np.testing.assert_allclose(spec.to_local([[1, 2, 3]], [[1.5, 2.5, 3.5]]), [[0.5, 0.5, 0.5]])
    absolute = DomainSpec.from_dict({**MUG, "frame": {"type": "absolute"}})
    np.testing.assert_allclose(absolute.to_local([[1, 2, 0, 1]], [[4, 5]]), [[4, 5]])
    shifted = DomainSpec.from_dict({**MUG, "frame": {"type": "translation", "origin": ["y", "x"]}})
    assert not shifted.relative_prefix
    np.testing.assert_allclose(shifted.to_local([[1, 2, 0, 1]], [[4, 5]]), [[2, 4]])


def test_se2_with_a_third_number_translates_it():
    data = {**MUG, "state": MUG["state"] + [{"name": "z", "unit": "m"}],
            "target": MUG["target"] + [{"name": "z", "unit": "m"}],
            "frame": {"type": "se2", "origin": ["x", "y", "z"], "yaw": "yaw"}}
    spec = DomainSpec.from_dict(data)
    local = spec.to_local([[0, 0, math.pi, 1, 0.9]], [[-1, 0, 1.0]])
    np.testing.assert_allclose(local, [[1, 0, 0.1]], atol=1e-12)


def test_to_dict_round_trips():
    spec = load_spec(EXAMPLE)
    again = DomainSpec.from_dict(spec.to_dict(), "checkpoint")
    assert again.to_dict() == spec.to_dict()
    assert again.plausible_target == spec.plausible_target and again.recipes == spec.recipes


@pytest.mark.parametrize("change, words", [
    ({"name": "Mug Counter"}, ["name", "lowercase letter"]),
    ({"target": [{"name": "x"}]}, ["target", "has 1 fields", "2 or 3"]),
    ({"frame": {"type": "se3"}}, ["frame.type", "absolute, translation, se2"]),
    ({"frame": {"type": "se2", "origin": ["x", "y"], "yaw": "heading"}}, ["frame.yaw", "'heading'", "x, y, yaw"]),
    ({"frame": {"type": "translation", "origin": ["x"]}}, ["frame.origin", "one state field per target field"]),
    ({"frame": {"type": "se2", "origin": ["x", "q"], "yaw": "yaw"}}, ["frame.origin[1]", "'q'"]),
    ({"state": [{"name": "x", "range": [1, -1]}]}, ["state[0].range", "low 1 is not below high -1"]),
    ({"state": [{"name": "x"}, {"name": "x"}]}, ["state[1].name", "twice"]),
    ({"state": [{"name": "x", "units": "m"}]}, ["state[0]", "unknown key 'units'"]),
    ({"colour": "red"}, ["top level", "unknown key 'colour'"]),
    ({"plausible_target": {"z": [0, 1]}}, ["plausible_target.z", "not a target field"]),
    ({"recipes": {"huge": {"width": 8}}}, ["recipes.huge", "full, demo, quick"]),
    ({"recipes": {"demo": {"widht": 8}}}, ["recipes.demo", "unknown key 'widht'"]),
    ({"recipes": {"demo": {"width": 0}}}, ["recipes.demo.width", "positive whole number"]),
    ({"map_check": {"object": {"x": "x"}}}, ["map_check.object", "x, y, width, height, yaw"]),
])
def test_malformed_specs_name_the_file_the_field_and_the_fix(tmp_path, change, words):
    path = write(tmp_path, {**MUG, **change})
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "fix:" in message
    for word in words:
        assert word in message


def test_files_that_are_not_specs(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(SpecError, match="not a mapping"):
        load_spec(bad)


def test_builtin_specs_match_the_thesis_domains():
    for name in BUILTIN_SPECS:
        spec = builtin_spec(name)
        assert spec.name == name and spec.relative_prefix
    for name, domain in (("cabinet", Cabinet()), ("round_table", RoundTable())):
        spec = builtin_spec(name)
        assert (spec.state_dim, spec.target_dim) == (domain.state_dim, domain.target_dim)
        np.testing.assert_allclose([f.low for f in spec.state], domain.condition_low)
        np.testing.assert_allclose([f.high for f in spec.state], domain.condition_high)
        data = domain.general_dataset(5000, 3)
        assert not spec.bad_rows(data.conditions, data.targets).any()  # every generated row is plausible
        far = data.targets + np.array([0.0, 0.0, 5.0])
        assert spec.bad_rows(data.conditions, far).all()  # 5 m above: outside the plausible range
    nav = builtin_spec("navigate_to")
    from dualdiff_ros.sim.dataset import STATE_FIELDS, TARGET_DIM
    assert tuple(nav.state_names) == STATE_FIELDS and nav.target_dim == TARGET_DIM
    assert nav.map_check is not None and nav.map_check.object["yaw"] == "object_yaw"


def test_why_bad_words_the_first_reason():
    spec = load_spec(EXAMPLE)
    assert spec.why_bad([0, 0, 0, 1], [0.5, 0.1]) == ""
    assert "state.x = 11" in spec.why_bad([11, 0, 0, 1], [0.5, 0.1])
    assert "state.length is nan" in spec.why_bad([0, 0, 0, np.nan], [0.5, 0.1])
    assert "plausible_target.y" in spec.why_bad([0, 0, 0, 1], [0.5, 0.9])
    # turned a quarter turn, world y 0.9 is along the counter: plausible
    assert spec.why_bad([0, 0, math.pi / 2, 1], [-0.1, 0.9]) == ""
