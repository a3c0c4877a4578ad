"""What the command line shows before a command runs: help without Python types, and shell completion.

Light on purpose (typer only): ``reorder --help`` must not load polars, pyarrow, numpy or rich's tables
(tests/test_startup.py). The completion functions import the registries they read when they are called.
"""

from __future__ import annotations

from typer.core import TyperArgument, TyperGroup, TyperOption


def _plain(params: list) -> list:
    """Typer's rich help prints a parameter's Python type (``<bool>``, ``<list[str]>``, ``<path>``);
    a flag shows nothing, an argument only its name, an option the metavar cli.py gives it."""
    for p in params:
        if isinstance(p, TyperOption) and (p.is_flag or p.count) and p.metavar is None:
            p.metavar = ""
        elif isinstance(p, TyperArgument):
            p.display_type_rich = _no_type
    return params


def _no_type(ctx: object = None) -> None:
    return None


class Group(TyperGroup):
    """The ``reorder`` group: its own help and every command's, without Python types."""

    def get_params(self, ctx):
        return _plain(super().get_params(ctx))

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain(command.get_params(ctx))
        return command


# ------------------------------------------------------------------ shell completion


def method_names(incomplete: str) -> list[str]:
    """``--method``: the registry's method names (and aliases)."""
    from reorder_cli.methods import METHODS

    names = [n for name, m in METHODS.items() for n in (name, *m.aliases)]
    return [n for n in names if n.startswith(incomplete)]


def method_list(incomplete: str) -> list[str]:
    """``--compare``: a comma-separated list; completes its last item."""
    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    return [prefix + n for n in method_names(last)]


def set_keys(incomplete: str) -> list[str]:
    """``--set``: the config keys (the key table of :mod:`reorder_cli.config`) as ``KEY=``; the sections
    (``slurm``, ``ray``, ``storage_options``, ``select``) also as ``SECTION.``."""
    if "=" in incomplete:
        return []
    from reorder_cli import config

    keys = [f"{k}=" for k in config.KEYS] + [f"{s}." for s in config.SECTIONS]
    return [k for k in keys if k.startswith(incomplete)]
