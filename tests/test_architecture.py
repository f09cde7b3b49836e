"""Import directions (docs/architecture.md): dependencies point one way and no two modules import each other.

The graph is read from the sources with ``ast`` — every ``import`` anywhere in a module, function-level ones
included (a lazy import still couples two modules), except those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "tvau_lightning"

#: lower layers first; a module may import its own layer or any layer below, never one above
LAYERS: list[set[str]] = [
    {"atomic", "visualize", "modules.prompts", "modules.ahd", "modules.grid", "modules.rae", "metrics", "data",
     "backbones"},
    {"checkpoints", "modules"},
    {"tasks", "inference", "builder", "evaluation", "report"},
    {"commands", "cli"},
]

#: (importer prefix, imported prefix, why) pairs that must never appear, beyond the layering
FORBIDDEN: list[tuple[str, str, str]] = [
    ("modules", "lightning", "modules/ holds plain nn.Modules; Lightning belongs in tasks/"),
    ("metrics", "tvau_lightning.backbones", "metrics/ never imports a backbone"),
    ("data", "tvau_lightning.backbones", "data/ never imports a backbone"),
    ("tasks", "tvau_lightning.inference", "tasks/ never imports inference/"),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every module ``path`` imports (resolved to a known module where the name is a symbol of one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}
    modules = set(files)
    return {name: _imports(path, modules) for name, path in files.items()}


def _local(name: str) -> str:
    return name.removeprefix(f"{PACKAGE}.")


def _layer(name: str) -> int | None:
    local = _local(name)
    best, best_len = None, -1
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if (local == prefix or local.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def test_every_module_has_a_layer(graph):
    orphans = sorted(m for m in graph if m not in (PACKAGE,) and _layer(m) is None)
    assert not orphans, f"modules outside every layer of LAYERS (add them to the right one): {orphans}"


def test_no_import_cycles(graph):
    project = {m: {i for i in deps if i in graph and i != m} for m, deps in graph.items()}
    # a package's __init__ importing its own submodules is how packages export names, not a cycle
    for m, deps in project.items():
        project[m] = {d for d in deps if not d.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(project[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(project):
        if module not in state:
            dfs(module)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(map(_local, c)) for c in cycles)


def test_dependencies_point_down(graph):
    upward = []
    for module, deps in graph.items():
        own = _layer(module)
        for dep in deps:
            if dep.startswith(PACKAGE + ".") and own is not None:
                theirs = _layer(dep)
                if theirs is not None and theirs > own:
                    upward.append(f"{_local(module)} (layer {own}) imports {_local(dep)} (layer {theirs})")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


@pytest.mark.parametrize(("importer", "imported", "why"), FORBIDDEN)
def test_forbidden_imports(graph, importer, imported, why):
    bad = sorted(f"{_local(m)} imports {d}" for m, deps in graph.items() for d in deps
                 if _local(m).startswith(importer) and (d == imported or d.startswith(imported + ".")))
    assert not bad, f"{why}:\n" + "\n".join(bad)


def test_the_checker_sees_a_cycle(tmp_path):
    """The graph reader resolves relative and symbol imports, so a real cycle cannot slip through."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (pkg / "b.py").write_text("from . import a\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.c\n")
    modules = {"pkg", "pkg.a", "pkg.b", "pkg.c"}
    global SRC
    saved, SRC = SRC, tmp_path
    try:
        assert _imports(pkg / "a.py", modules) == {"pkg.b"}
        assert _imports(pkg / "b.py", modules) == {"pkg.a", "typing"}
    finally:
        SRC = saved
