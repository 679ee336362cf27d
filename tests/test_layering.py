"""The package's import graph: no module imports itself back through others, and every import runs down the layers
the README's "How it is built" section draws (commands on top, models and the toy world at the bottom)."""

from __future__ import annotations

import ast
from pathlib import Path

import stream_r1

PACKAGE = Path(stream_r1.__file__).parent

# The package's parts, bottom to top (README "How it is built"). A module imports only its own folder and the
# layers below; the parts on one layer know nothing of each other.
LAYERS = (
    ("common",),  # configs, devices, statistics, safe weight files
    ("runstate", "toyworld"),  # resumable training state; the toy world (prompts, renders, ToyBench)
    ("models",),  # the DiT, its KV cache, text encoders, codecs, Wan I/O
    ("diffusion",),  # schedules, samplers, prompt switching
    ("generation",),  # the pipeline, timelines, generate, video files
    ("reward", "reweight"),  # reward models and their training; Stream-R1's weights
    ("distill",),  # teacher pretraining, ODE init, DMD, Stream-R1 training, parallelism
    ("evaluation", "serve"),  # ToyBench evaluation, compare, diagnose, demo; the live page
    ("cli", "__init__"),  # the command line
    ("__main__",),  # `python -m stream_r1`
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every stream_r1 module `path` imports, at any depth of the file (lazy and type-checking imports count)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] + [f"{target}.{a.name}" for a in node.names]  # `from . import x` imports module x
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import a.b.c` of a package path counts as its deepest module
                t = t.rpartition(".")[0]
            if t and t != name and t != "stream_r1":
                found.add(t)
    return found


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imported_modules(f, modules) for f in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a set of modules importing in a circle."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "stream_r1.cli" in graph and len(graph) > 50
    assert any(graph.values())
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def part(module: str) -> str:
    """The folder (or top-level module) of the package a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(module: str) -> int:
    name = part(module)
    for i, parts in enumerate(LAYERS):
        if name in parts:
            return i
    raise AssertionError(f"{module}: its part {name!r} is on no layer; add it to LAYERS and the README")


def test_every_import_runs_down_the_layers():
    upward = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                    if part(a) != part(b) and layer_of(b) >= layer_of(a))
    assert upward == []


def test_every_part_has_a_one_line_docstring():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and doc.splitlines()[0].endswith("."), init


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []
