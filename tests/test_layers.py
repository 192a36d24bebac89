"""The package's rooms and their order: every import inside ``lmgnn_dist`` (function-local
ones included) goes to the same layer or one below, and no module imports in a cycle
(``lmgnn_dist/__init__.py`` and ``ARCHITECTURE.md`` draw the layers)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "lmgnn_dist"
#: first part of a module's name under lmgnn_dist -> its layer (higher imports lower)
LAYERS = {"stages": 0, "config": 0, "device": 0, "monitor": 0, "dist_init": 0,
          "model": 1, "data": 2, "tasks": 3, "run": 3, "trainer": 4, "jobs": 5, "drivers": 6}


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _imports(path: Path):
    """(line, imported lmgnn_dist module) of every import in ``path``."""
    rel = path.relative_to(REPO).with_suffix("")
    pkg = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            else:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for n in names:
            if n and n.startswith("lmgnn_dist.") and _room(n) in LAYERS:
                yield node.lineno, n


def test_top_level_holds_a_handful_of_modules_and_every_room_has_a_layer():
    top = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")
    assert len(top) <= 6, top
    rooms = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert set(top) | rooms == set(LAYERS), (set(top) | rooms) ^ set(LAYERS)
    for room in rooms:  # each folder says what it owns and what it may import
        doc = ast.get_docstring(ast.parse((PKG / room / "__init__.py").read_text())) or ""
        assert len(doc) > 200 and ("import" in doc), room


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in sorted(PKG.rglob("*.py")):
        me = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for line, target in _imports(path):
            if LAYERS[_room(target)] > LAYERS[_room(me)]:
                upward.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert upward == []


def _module_of(name: str) -> str:
    """The module (file) an imported name lives in: ``lmgnn_dist.run.checkpoint`` is a
    module, ``lmgnn_dist.run.checkpoint.write_stage`` an attribute of it."""
    parts = name.split(".")
    while parts:
        path = REPO.joinpath(*parts)
        if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
            return ".".join(parts)
        parts.pop()
    return name


def test_no_import_cycles_function_local_imports_included():
    graph = {}
    for path in sorted(PKG.rglob("*.py")):
        me = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        graph[me] = {_module_of(t) for _, t in _imports(path)} - {me}
    # Tarjan's strongly connected components: any component of two or more is a cycle
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []
