"""The package's rooms depend one way: no module imports a room above its own.

Data flows raw files -> data_prep -> models -> orchestrator (config and records <- storage <-
training <- evaluation <- execution <- inference <- tune) -> results, and the CLI wires them all.
Inside data_prep and results the modules rank too: no import cycle among them. results reads of
orchestrator only the run-record schema. Every import counts, including those inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("atomicio", "data_prep", "models", "orchestrator", "results", "cli")

# lowest first; a module may import its own room and rooms below it (longest prefix wins)
LAYERS = [
    ("partfer.atomicio",),
    ("partfer.data_prep",),
    ("partfer.models.pool_rules", "partfer.models.pooling"),
    ("partfer.models.kernels",),
    ("partfer.models",),
    ("partfer.orchestrator", "partfer.orchestrator.config", "partfer.orchestrator.config_schema",
     "partfer.orchestrator.records", "partfer.orchestrator.run_files"),
    ("partfer.orchestrator.storage",),
    ("partfer.orchestrator.training",),
    ("partfer.orchestrator.evaluation",),
    ("partfer.orchestrator.execution",),
    ("partfer.orchestrator.inference",),
    ("partfer.orchestrator.tune",),
    ("partfer.results",),
    # the command line and its entry points: `python -m partfer`, `-m partfer.data_prep`, `-m partfer.results`
    ("partfer.cli", "partfer", "partfer.__main__", "partfer.run_all",
     "partfer.data_prep.__main__", "partfer.results.__main__"),
]
RANK = {prefix: rank for rank, prefixes in enumerate(LAYERS) for prefix in prefixes}


def rank_of(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in RANK:
            return RANK[prefix]
    raise KeyError(module)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["partfer", *parts])


def package_modules() -> list[Path]:
    files = [ROOT / "__init__.py", ROOT / "__main__.py", ROOT / "run_all.py"]
    for room in ROOMS:
        files += sorted((ROOT / room).rglob("*.py"))
    return files


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every partfer import in the file, absolute or relative."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + (path.name == "__init__.py")]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from partfer.x import y` may name a submodule y: judge by the deepest known name
            found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return [(line, m) for line, m in found if m.split(".")[0] == "partfer" or m.split(".")[0] in ROOMS]


def test_every_import_uses_the_one_import_name():
    stray = [f"{p.relative_to(ROOT)}:{line}: {m}" for p in package_modules() for line, m in imports_of(p)
             if m.split(".")[0] != "partfer"]
    assert not stray, "imports by a top-level name instead of partfer.*:\n" + "\n".join(stray)


def test_no_room_imports_one_above_it():
    upward = []
    for path in package_modules():
        source = module_name(path)
        for line, target in imports_of(path):
            if rank_of(target) > rank_of(source):
                upward.append(f"{path.relative_to(ROOT)}:{line}: {source} imports {target}")
    assert not upward, "imports that reach up a layer:\n" + "\n".join(upward)


# rooms whose modules must form no import cycle among themselves (a module-level ranking exists)
RANKED_INSIDE = ("partfer.data_prep", "partfer.results")
# what results may import from orchestrator: the run-record schema (records, the network specs,
# the run folder's file names)
RESULTS_READS = ("partfer.orchestrator.records", "partfer.orchestrator.networks", "partfer.orchestrator.run_files")


def in_room(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


def imported_module(name: str, modules: set[str]) -> str | None:
    """The module an imported name lives in: `partfer.a.b.X` -> `partfer.a.b` when that is a module."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in its file)."""
    paths = {module_name(p): p for p in package_modules()}
    graph = {}
    for source, path in paths.items():
        targets = {imported_module(target, set(paths)) for _, target in imports_of(path)}
        graph[source] = {t for t in targets if t is not None and t != source}
    return graph


def cycles_in(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) per strongly connected group of modules that has one."""
    found, done = [], set()
    for start in sorted(graph):
        if start in done:
            continue
        stack, path, on_path = [(start, iter(sorted(graph[start])))], [start], {start}
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                found.append(path[path.index(child):] + [child])
            elif child not in done and child in graph:
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
                on_path.add(child)
    return found


@pytest.mark.parametrize("room", RANKED_INSIDE)
def test_no_import_cycle_among_a_rooms_modules(room):
    graph = import_graph()
    inside = {m: {t for t in targets if in_room(t, room)} for m, targets in graph.items() if in_room(m, room)}
    cycles = cycles_in(inside)
    assert not cycles, f"import cycles in {room}:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_itself():
    assert cycles_in({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles_in({"a": {"a2"}, "a2": set(), "b": {"c"}, "c": {"b"}}) == [["b", "c", "b"]]


def test_results_imports_only_the_run_record_schema_from_orchestrator():
    stray = [f"{p.relative_to(ROOT)}:{line}: {target}" for p in package_modules()
             if in_room(module_name(p), "partfer.results") for line, target in imports_of(p)
             if in_room(target, "partfer.orchestrator") and not any(in_room(target, m) for m in RESULTS_READS)]
    assert not stray, "results imports orchestrator beyond the run-record schema:\n" + "\n".join(stray)


@pytest.mark.parametrize("source, target, allowed", [
    ("partfer.results.load", "partfer.orchestrator.records", True),
    ("partfer.orchestrator.records", "partfer.results.load", False),
    ("partfer.orchestrator.training.train", "partfer.orchestrator.execution.plan", False),
    ("partfer.models.kernels.fused_bn", "partfer.models.pooling", True),
    ("partfer.models.kernels.fused_bn", "partfer.models.packed", False),
    ("partfer.data_prep.pipeline", "partfer.models.packed", False),
])
def test_the_rule_itself(source, target, allowed):
    assert (rank_of(target) <= rank_of(source)) is allowed


def test_every_room_has_a_docstring():
    missing = [str(p.relative_to(ROOT)) for p in package_modules()
               if p.name == "__init__.py" and not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, f"packages without a one-line docstring of their job: {missing}"
