"""The package's imports point one way: a module imports only from its own layer or the layers below.

The layers, lowest first, are the flow of a run (see the README's "How it is built"). A module
that needs something from a layer above is a sign that a concept has the wrong owner: move the
concept down rather than add an exception here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "reorder_cli"

#: Lowest first. A name is a module (``config``) or a subpackage (``plan``) of reorder_cli.
LAYERS = [
    ["__init__", "errors", "util"],
    ["methods"],
    ["mix"],  # mixtures: schedules, quotas, the merge by scheduled time, shares (errors/util/numpy only)
    ["config", "config_show"],
    ["formats"],
    ["metrics"],
    ["tokens"],  # documents as token ids, a piece a shard
    ["export"],  # token pieces and rows assembled into what a trainer reads (megatron, olmo, mds)
    ["workdir", "work_store", "task_outputs"],  # the work folder; its traffic with a store; what tasks wrote
    ["run_lock"],  # one run of an output at a time
    ["plan"],
    ["rewrite"],
    ["stages"],
    ["publish"],
    ["loader"],
    ["inspect"],
    ["pipeline"],
    ["execute"],
    ["render"],
    ["cli_help"],  # the help text and completion of the command line (typer only)
    ["cli", "__main__"],
    ["reference"],  # the docs' reference pages, rendered from every registry (and the CLI's help)
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _unit(module: str) -> str:
    """'reorder_cli.plan.stored' -> 'plan'; 'reorder_cli' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, package_dir: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, imported module) for every import of reorder_cli in ``path``, lazy imports included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module_name(path, package_dir)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("reorder_cli")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("reorder_cli"):
                continue
            if module == "reorder_cli":  # from reorder_cli import plan, config
                found += [(node.lineno, f"reorder_cli.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    bad = []
    for path in sorted(package.rglob("*.py")):
        own = _unit(_module_name(path, package))
        for line, module in imports(path, package):
            target = _unit(module)
            if target == "__version__":
                target = "__init__"
            if own not in RANK or target not in RANK:
                bad.append(f"{path.relative_to(package.parent)}:{line}: {module} is in no layer; add it to LAYERS")
            elif RANK[target] > RANK[own]:
                bad.append(f"{path.relative_to(package.parent)}:{line}: {own} imports {module}, a layer above it")
    return bad


def test_imports_point_one_way():
    assert violations() == []


def test_every_module_has_a_layer():
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert units - set(RANK) == set()


def test_the_check_catches_an_upward_import(tmp_path):
    """Negative control: a low layer importing a high one is reported."""
    pkg = tmp_path / "reorder_cli"
    (pkg / "util").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "util" / "__init__.py").write_text("")
    (pkg / "util" / "bad.py").write_text("from reorder_cli.pipeline import run\nfrom reorder_cli import errors\n")
    (pkg / "pipeline.py").write_text("from reorder_cli.util import bad\n")
    found = violations(pkg)
    assert len(found) == 1 and "util imports reorder_cli.pipeline" in found[0]


@pytest.mark.parametrize("name", ["reorder_cli.cli", "reorder_cli.pipeline"])
def test_top_layers_import(name):
    __import__(name)
