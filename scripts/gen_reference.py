"""Write the docs' reference pages (docs/reference/*.md) from the code's registries.

    python scripts/gen_reference.py           # rewrite the pages
    python scripts/gen_reference.py --check   # exit 1 naming every page that differs (what tests/test_docs.py checks)

The pages are rendered by reorder_cli.reference; never edit them by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reorder_cli import reference

DOCS = Path(__file__).resolve().parent.parent / "docs" / "reference"


def stale(folder: Path = DOCS) -> list[str]:
    """The pages under ``folder`` that differ from what the code renders."""
    return [name for name, render in reference.PAGES.items()
            if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != render()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is out of date")
    args = parser.parse_args()
    if args.check:
        bad = stale()
        for name in bad:
            print(f"docs/reference/{name} is out of date: run python scripts/gen_reference.py", file=sys.stderr)
        return 1 if bad else 0
    DOCS.mkdir(parents=True, exist_ok=True)
    for name, render in reference.PAGES.items():
        (DOCS / name).write_text(render(), encoding="utf-8")
        print(f"wrote docs/reference/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
