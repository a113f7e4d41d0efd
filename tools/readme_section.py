"""A README section between two markers, generated from the code: print, --write or --check.

Each generator (settings_table, request_fields_table) names its markers and how to make its
text; this module is the one place that splices it into README.md and tells it stale.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


@dataclass(frozen=True)
class Section:
    prog: str  # e.g. "python -m tools.settings_table"
    begin: str
    end: str
    make: Callable[[], str]
    what: str  # e.g. "settings table", for the stale message

    def render(self, readme: str) -> str:
        """`readme` with the text between the markers replaced by the current text."""
        if self.begin not in readme or self.end not in readme:
            raise SystemExit(f"README.md lacks the markers {self.begin!r} ... {self.end!r}")
        head, rest = readme.split(self.begin, 1)
        _, tail = rest.split(self.end, 1)
        return f"{head}{self.begin}\n{self.make()}\n{self.end}{tail}"

    def main(self, argv: list[str] | None = None, readme: Path = README) -> int:
        parser = argparse.ArgumentParser(prog=self.prog)
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--write", action="store_true", help=f"rewrite the {self.what} in README.md")
        mode.add_argument("--check", action="store_true", help="exit 1 when README.md is stale")
        args = parser.parse_args(argv)
        if not (args.write or args.check):
            print(self.make())
            return 0
        current = readme.read_text(encoding="utf-8")
        fresh = self.render(current)
        if args.write:
            readme.write_text(fresh, encoding="utf-8")
            return 0
        if fresh != current:
            print(f"README.md's {self.what} is stale: run `{self.prog} --write`", file=sys.stderr)
            return 1
        return 0
