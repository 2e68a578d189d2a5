"""The package's shape: one folder per responsibility, imports that run one way (down the floors below), no
import cycle, and nothing at the top but the entry point and the public face."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "spade_pl"
#: each folder's floor: a module may import its own folder and folders on lower floors only
FLOORS = {
    "core": 0,
    "physics": 1,
    "data": 2,
    "models": 2,
    "pruning": 3,
    "benchmark": 4,
    "weights": 5,
    "reporting": 5,
    "objectives": 6,
    "training": 7,
    "job": 8,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The spade_pl modules ``path`` imports when it is imported (function-level imports and
    ``TYPE_CHECKING`` blocks run later or never, so they cannot close a cycle at import time)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spade_pl"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("spade_pl")}
    return found


GRAPH = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def folder(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_the_top_of_the_package_is_the_entry_point_and_the_public_face():
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py"]
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(FLOORS)


def test_no_import_cycle():
    def package_of(module: str) -> list[str]:  # importing a.b.c imports a.b's __init__ first
        parts = module.split(".")
        return [".".join(parts[:i]) for i in range(2, len(parts))]

    def outside(module: str, target: str) -> bool:  # a module's own packages are initialising already
        return target != module and not module.startswith(target + ".")

    edges = {
        m: {t for i in deps for t in (i, *package_of(i)) if t in GRAPH and outside(m, t)} for m, deps in GRAPH.items()
    }
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in edges[module]:
            assert state.get(target) != 1, "import cycle: " + " -> ".join([*path, module, target])
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in GRAPH:
        if module not in state:
            visit(module, [])


def test_imports_run_down_the_floors():
    upward = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if folder(module) in FLOORS
        for target in targets
        if folder(target) in FLOORS
        and folder(target) != folder(module)
        and FLOORS[folder(target)] >= FLOORS[folder(module)]
    ]
    assert not upward, upward


def test_no_module_over_300_lines():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long
