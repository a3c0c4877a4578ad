"""A pytest plugin: under CI (``CI`` set), a skipped test fails the run.

A test skipped in CI proves nothing: CI installs every extra and starts every engine the tests
need, so a skip there means a missing install step. Set ``REORDER_ALLOW_SKIPS=1`` to allow skips
(a developer without root, say); outside CI skips are allowed and their reasons printed.
"""

from __future__ import annotations

import os

import pytest


def _enforced() -> bool:
    return bool(os.environ.get("CI")) and not os.environ.get("REORDER_ALLOW_SKIPS")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and _enforced() and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped and _enforced():
        terminalreporter.write_line(f"CI: {len(skipped)} test(s) skipped; under CI a skip is a failure "
                                    "(a missing install step?):", red=True)
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            terminalreporter.write_line(f"  {report.nodeid}: {reason}", red=True)
