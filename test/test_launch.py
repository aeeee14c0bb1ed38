"""The launch file, the parameter file and the bring-up, checked without `launch` / `ros2 launch`.

`launch` and `launch_ros` are not installable here, so the launch file is parsed, not run:
every executable it names must be a console script, every parameter file it names must exist,
and every parameter the YAML sets must be declared by its node (with the same type).
"""

import ast
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from dualdiff_ros.bringup import NODE_CLASSES, node_parameters, start_nodes, stop_nodes

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch" / "dualdiff.launch.py"
CONFIG = ROOT / "config" / "bringup.yaml"


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _keyword(call, name):
    return next((k.value for k in call.keywords if k.arg == name), None)


def console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for call in _calls(tree, "setup"):
        entry_points = ast.literal_eval(_keyword(call, "entry_points"))
        return dict(line.replace(" ", "").split("=") for line in entry_points["console_scripts"])
    raise AssertionError("setup.py has no setup(entry_points=...)")


@pytest.fixture(scope="module")
def launch_tree():
    return ast.parse(LAUNCH.read_text())


def test_launch_file_defines_generate_launch_description(launch_tree):
    functions = [n.name for n in launch_tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in functions
    imported = {n.module for n in ast.walk(launch_tree) if isinstance(n, ast.ImportFrom)}
    assert {"launch", "launch_ros.actions"} <= imported
    arguments = {ast.literal_eval(c.args[0]) for c in _calls(launch_tree, "DeclareLaunchArgument")}
    assert arguments == {"model_dir", "config", "namespace", "autostart", "rviz"}


def _launched_nodes(launch_tree) -> dict[str, ast.Call]:
    """Each executable -> its Node/LifecycleNode call, for the package's own nodes (RViz is another package's)."""
    found = {}
    for call in _calls(launch_tree, "Node") + _calls(launch_tree, "LifecycleNode"):
        if ast.literal_eval(_keyword(call, "package")) != "dualdiff_ros":
            continue
        executable = _keyword(call, "executable")
        if isinstance(executable, ast.Name):  # the loop over LIFECYCLE_NODES
            names = next(ast.literal_eval(n.value) for n in launch_tree.body if isinstance(n, ast.Assign)
                         and n.targets[0].id == "LIFECYCLE_NODES")
            found.update({name: call for name in names})
        else:
            found[ast.literal_eval(executable)] = call
    return found


def test_every_executable_is_a_console_script_with_a_main(launch_tree):
    scripts = console_scripts()
    nodes = _launched_nodes(launch_tree)
    assert sorted(nodes) == sorted(NODE_CLASSES)
    for executable, call in nodes.items():
        assert executable in scripts, f"{executable} is not a console script in setup.py"
        name = _keyword(call, "name")  # the YAML section's name
        assert ast.dump(name) == ast.dump(_keyword(call, "executable")) or ast.literal_eval(name) == executable
        assert _keyword(call, "namespace") is not None, f"{executable} ignores the namespace argument"
        module, function = scripts[executable].split(":")
        assert callable(getattr(__import__(module, fromlist=[function]), function))
    assert callable(getattr(__import__("dualdiff_ros.bringup", fromlist=["main"]), "main"))
    assert scripts["dualdiff_bringup"] == "dualdiff_ros.bringup:main"


def test_the_model_nodes_are_lifecycle_nodes_brought_up_by_the_launch_file(launch_tree):
    from rclpy.lifecycle import LifecycleNode

    lifecycle = {n for n, call in _launched_nodes(launch_tree).items() if call.func.id == "LifecycleNode"}
    assert lifecycle == {n for n, cls in NODE_CLASSES.items() if issubclass(cls, LifecycleNode)}
    assert lifecycle == {"general_prior_node", "specialized_model_node", "placement_proposal_node"}
    transitions = {a.attr for c in _calls(launch_tree, "_transition") for a in ast.walk(c)
                   if isinstance(a, ast.Attribute) and a.attr.startswith("TRANSITION_")}
    assert transitions == {"TRANSITION_CONFIGURE", "TRANSITION_ACTIVATE"}
    assert _calls(launch_tree, "OnStateTransition"), "activate must wait for the inactive state"


def test_the_rviz_config_is_installed_and_names_the_topics(launch_tree):
    from dualdiff_ros.nodes.topics import PROPOSAL_MARKERS_TOPIC, SCENE_MAP_TOPIC, SCENE_MARKERS_TOPIC

    rviz = yaml.safe_load((ROOT / "rviz" / "dualdiff.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d}
    assert topics == {PROPOSAL_MARKERS_TOPIC, SCENE_MARKERS_TOPIC, SCENE_MAP_TOPIC}  # relative: namespaced too
    assert '"rviz/*.rviz"' in (ROOT / "setup.py").read_text()


def test_every_parameter_file_named_exists(launch_tree):
    named = [c.value for c in ast.walk(launch_tree) if isinstance(c, ast.Constant) and isinstance(c.value, str)
             and c.value.endswith((".yaml", ".yml"))]
    assert named, "the launch file names no parameter file"
    for name in named:
        assert (ROOT / "config" / name).is_file(), f"launch file names config/{name}, which does not exist"


@pytest.mark.parametrize("config", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_config_has_the_ros_parameters_form(config):
    document = yaml.safe_load(config.read_text())
    assert document and set(document) <= {*NODE_CLASSES, "/**"}, f"{config.name}: sections must be node names"
    for node, section in document.items():
        assert set(section) == {"ros__parameters"}, node
        assert isinstance(section["ros__parameters"], dict) and section["ros__parameters"], node
    if config == CONFIG:
        assert set(document) == set(NODE_CLASSES)  # the bring-up config covers every node


def test_every_configured_parameter_is_declared_with_its_type(ros_context, tmp_path):
    # start_nodes passes the YAML as parameter overrides: a wrong type fails at declaration.
    executor, nodes = start_nodes(ros_context, CONFIG, model_dir=str(tmp_path),
                                  overrides={"specialized_model_node": {"db_path": str(tmp_path / "obs.sqlite")}})
    try:
        for node in nodes:
            for param in node_parameters(CONFIG, node.get_name()):
                assert node.has_parameter(param.name), f"{node.get_name()} does not declare {param.name}"
                declared = node.get_parameter(param.name)
                assert declared.type_ == param.type_, (node.get_name(), param.name)
    finally:
        stop_nodes(executor, nodes)


def test_docs_list_every_parameter(ros_context, tmp_path):
    docs = (ROOT / "docs" / "ros_interfaces.md").read_text()
    executor, nodes = start_nodes(ros_context, None, model_dir=str(tmp_path),
                                  overrides={"specialized_model_node": {"db_path": str(tmp_path / "obs.sqlite")}})
    try:
        for node in nodes:
            assert f"## {node.get_name()}" in docs
            for name in node._parameters:
                if name not in ("use_sim_time", "start_type_description_service"):
                    assert f"`{name}`" in docs, f"docs/ros_interfaces.md does not describe {node.get_name()} {name}"
    finally:
        stop_nodes(executor, nodes)


def _start_bringup(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path))  # the config's ~/.dualdiff paths land in tmp_path
    process = subprocess.Popen(
        [sys.executable, "-m", "dualdiff_ros.bringup", "--config", str(CONFIG), "--model-dir", str(tmp_path / "m")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    return process, lines


def _wait_for_line(lines, words, timeout=60.0):
    seen = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line with {words!r}; output so far:\n{''.join(seen)}") from None
        seen.append(line)
        if words in line:
            return seen


def _drain(lines) -> list[str]:
    out = []
    while not lines.empty():
        out.append(lines.get())
    return out


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_bringup_starts_every_node_and_stops_cleanly(tmp_path, stop_signal):
    process, lines = _start_bringup(tmp_path)
    try:
        seen = _wait_for_line(lines, "started general_prior_node, specialized_model_node, "
                                     "placement_proposal_node, simulator_node")
        assert any("no general prior at" in line and "dualdiff train" in line for line in seen)
        assert "torch intra-op threads: 1," in seen[-1]  # served requests are 1.7x slower with torch's default
        process.send_signal(stop_signal)
        code = process.wait(30)
        assert code == 0, "".join(seen + _drain(lines))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (tmp_path / ".dualdiff" / "observations.sqlite").is_file()


def test_a_node_executable_takes_ros_args_and_stops_on_sigterm(tmp_path):
    script = Path(sys.executable).parent / "general_prior_node"
    if not script.exists():
        pytest.skip("console scripts not installed (pip install -e .)")
    process = subprocess.Popen([str(script), "--ros-args", "-p", f"model_dir:={tmp_path}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                               env=dict(os.environ, DUALDIFF_THREADS="2"))
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        seen = _wait_for_line(lines, "torch intra-op threads: 2")  # logged once the node is up
        assert any(f"no general prior at {tmp_path}/round_table/general.safetensors" in line for line in seen)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
