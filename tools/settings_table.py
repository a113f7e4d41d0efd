"""The README's table of every `BARK_*` setting, generated from `Settings` so it cannot drift.

python -m tools.settings_table            # print the table
python -m tools.settings_table --write    # rewrite it in README.md between the markers
python -m tools.settings_table --check    # exit 1 when README.md's table is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic_core import PydanticUndefined

from app.core.settings import Settings

BEGIN = "<!-- settings-table:begin (python -m tools.settings_table --write) -->"
END = "<!-- settings-table:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"


def _default(field_name: str) -> str:
    field = Settings.model_fields[field_name]
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None or value == []:
        return "unset"
    if isinstance(value, Path):
        # machine-specific absolute paths would make the table differ per machine
        home = str(Path.home())
        text = str(value).replace(home, "~", 1)
        repo = str(Path(__file__).resolve().parents[1])
        return f"`{text.replace(repo, '<repo>', 1)}`"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def table() -> str:
    prefix = Settings.model_config.get("env_prefix", "")
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name.upper()}` | {_default(name)} | {meaning} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    """`readme` with the text between the markers replaced by the current table."""
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the markers {BEGIN!r} ... {END!r}")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.settings_table")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when README.md is stale")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        print(table())
        return 0
    current = README.read_text(encoding="utf-8")
    fresh = render(current)
    if args.write:
        README.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != current:
        stale = "README.md's settings table is stale: run `python -m tools.settings_table --write`"
        print(stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
