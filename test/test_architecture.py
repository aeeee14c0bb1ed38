"""The layers of the package, checked from its source: no import cycles, a ROS-free core.

Every import counts, also those inside functions (a local import is how a cycle hides).
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dualdiff_ros"
ROS_MODULES = ("rclpy", "dualdiff_interfaces", "rcl_interfaces", "geometry_msgs", "std_msgs", "nav_msgs",
               "visualization_msgs", "diagnostic_msgs", "launch", "launch_ros")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of everything `path` imports (relative imports resolved; `from . import x` = x)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _reachable(graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_import_graph_has_no_cycle(graph):
    # A package's __init__ importing its own submodules is not a cycle of the design: drop those edges.
    acyclic = {m: {n for n in deps if not m.startswith(n + ".")} for m, deps in graph.items()}
    assert _cycle(acyclic) is None, " -> ".join(_cycle(acyclic))


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("layer", ["dualdiff_ros.diffusion", "dualdiff_ros.serving", "dualdiff_ros.limits",
                                   "dualdiff_ros.maps", "dualdiff_ros.model_store", "dualdiff_ros.training_jobs",
                                   "dualdiff_ros.learning"])
def test_core_layers_import_no_ros(layer):
    paths = list((PACKAGE / layer.split(".")[1]).rglob("*.py")) if (PACKAGE / layer.split(".")[1]).is_dir() \
        else [PACKAGE / (layer.split(".")[1] + ".py")]
    for path in paths:
        ros = {m for m in _imports(path) if m.split(".")[0] in ROS_MODULES}
        assert not ros, f"{path.relative_to(ROOT)} imports {sorted(ros)}"


def test_nodes_stay_glue():
    # A node that grows past this holds policy that belongs in a ROS-free module (serving.py, learning/).
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / "nodes").glob("*.py")}
    assert max(sizes.values()) <= 350, sizes


def test_training_needs_no_evaluation_package(graph):
    reached = _reachable(graph, "dualdiff_ros.training_jobs")
    assert not {m for m in reached if m.startswith("dualdiff_ros.evaluation")}, sorted(reached)


def test_the_product_refers_to_nothing_outside_the_repository():
    for path in [*PACKAGE.rglob("*.py"), *ROOT.glob("interfaces/**/*.srv"), *ROOT.glob("interfaces/**/*.msg"),
                 *ROOT.glob("docs/**/*.md"), ROOT / "README.md", *ROOT.glob("config/*.yaml")]:
        text = path.read_text()
        for ref in ("../shared", "DESIGN.md", "docs/CONTRACT.md"):
            assert ref not in text, f"{path.relative_to(ROOT)} refers to {ref}, which users do not have"


def test_the_serving_path_names_no_domain():
    """A domain is served from its spec: no string constant in serving.py or the serving nodes is a domain's name.

    (The simulator node is navigate-to's simulator, and documentation strings may name examples.)
    """
    names = {"cabinet", "round_table", "navigate_to", "mug_counter"}
    paths = [PACKAGE / "serving.py", *(p for p in sorted((PACKAGE / "nodes").glob("*.py"))
                                       if p.name != "simulator_node.py")]
    found = []
    for path in paths:
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        found += [f"{path.name}:{n.lineno} {n.value!r}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and n.value in names and id(n) not in docstrings]
        found += [f"{path.name}:{n.lineno} {n.id}" for n in ast.walk(tree) if isinstance(n, ast.Name)
                  and n.id in ("NAVIGATE_TO", "SERVED_DOMAINS", "MAPPED_DOMAINS", "FAMILY_DOMAINS")]
    assert not found, f"domain names in the serving path: {found}"
