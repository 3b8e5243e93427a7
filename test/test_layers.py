"""The package's layers, read from its real imports (every `import` statement, in functions too).

Stages, data, core and training never import the pipeline, the evaluation package, the benchmarks, the
command line or the nodes; the pipeline imports no scoring; only nodes/ imports rclpy; and no two modules
of the package import each other, directly or round a longer circle. Each rule is also shown to catch a
package built to break it.
"""
import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "ros2_sixdpose"
LOWER = ("core", "data", "train", "detection", "estimation", "refinement", "tracking")
UPPER = ("pipeline", "evaluation", "bench", "cli", "nodes")
SCORING = ("evaluation", "bench", "cli", "nodes")


def _module_name(path: Path, package_dir: Path) -> str:
    parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> set[str]:
    """Modules named by the import statements of `tree`, outside `if TYPE_CHECKING:` blocks."""
    names: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return names


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> every name it imports (package modules and third-party ones)."""
    return {
        _module_name(path, package_dir): _imports(ast.parse(path.read_text(), str(path)))
        for path in sorted(package_dir.rglob("*.py"))
    }


def _layer(module: str, package: str) -> str:
    parts = module.split(".")
    return parts[1] if parts[0] == package and len(parts) > 1 else ""


def layer_violations(graph: dict[str, set[str]], package: str) -> list[str]:
    """Each import that breaks a layer rule, as 'importer -> imported'."""
    found = []
    for module, imports in graph.items():
        layer = _layer(module, package)
        for name in sorted(imports):
            target = _layer(name, package) if name.split(".")[0] == package else ""
            if layer in LOWER and target in UPPER:
                found.append(f"{module} -> {name}")
            elif layer == "pipeline" and target in SCORING:
                found.append(f"{module} -> {name}")
            elif name.split(".")[0] == "rclpy" and layer != "nodes":
                found.append(f"{module} -> {name}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of package modules that import each other round a circle (strongly connected components > 1)."""
    edges = {module: {name for name in imports if name in graph and name != module} for module, imports in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in edges:
        if module not in index:
            visit(module)
    return found


def test_the_package_keeps_its_layers():
    graph = import_graph(PACKAGE_DIR)
    assert len(graph) > 80  # the whole package was read
    assert layer_violations(graph, PACKAGE_DIR.name) == []


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph(PACKAGE_DIR)) == []


@pytest.fixture
def broken_package(tmp_path) -> Path:
    """A package whose stage imports the pipeline and the evaluation, whose pipeline imports scoring, and two
    modules that import each other (one inside a function)."""
    root = tmp_path / "pkg"
    files = {
        "__init__.py": "",
        "pipeline.py": "from pkg.evaluation.scoring import score\n",
        "evaluation/__init__.py": "",
        "evaluation/scoring.py": "def score():\n    pass\n",
        "detection/__init__.py": "",
        "detection/base.py": "import pkg.pipeline\n",
        "detection/factory.py": "from pkg.detection.oracle import Oracle\n",
        "detection/oracle.py": "def make():\n    from pkg.detection import factory\n",
        "core/__init__.py": "",
        "core/render.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.nodes import x\nimport rclpy\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_rules_catch_a_broken_package(broken_package):
    graph = import_graph(broken_package)
    assert sorted(layer_violations(graph, "pkg")) == [
        "pkg.core.render -> rclpy",  # the import under TYPE_CHECKING does not count
        "pkg.detection.base -> pkg.pipeline",
        "pkg.pipeline -> pkg.evaluation.scoring",
        "pkg.pipeline -> pkg.evaluation.scoring.score",
    ]
    assert cycles(graph) == [["pkg.detection.factory", "pkg.detection.oracle"]]
