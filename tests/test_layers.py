"""The package's rooms depend one way: no module imports a room above its own.

Data flows raw files -> data_prep -> models -> orchestrator (config and records <- storage <-
training <- evaluation <- execution <- inference <- tune) -> results, and the CLI wires them all.
Every import counts, including those inside functions.
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
    ("partfer.models.pooling",),
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
    ("partfer.cli", "partfer", "partfer.__main__", "partfer.run_all"),
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
