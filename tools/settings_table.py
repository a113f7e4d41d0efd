"""The README's table of every `BARK_*` setting, generated from `Settings` so it cannot drift.

python -m tools.settings_table            # print the table
python -m tools.settings_table --write    # rewrite it in README.md between the markers
python -m tools.settings_table --check    # exit 1 when README.md's table is stale (a test runs this)
"""

from __future__ import annotations

from pathlib import Path

from pydantic_core import PydanticUndefined

from app.core.settings import Settings

from .readme_section import Section

BEGIN = "<!-- settings-table:begin (python -m tools.settings_table --write) -->"
END = "<!-- settings-table:end -->"


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


SECTION = Section("python -m tools.settings_table", BEGIN, END, table, "settings table")
render = SECTION.render
main = SECTION.main


if __name__ == "__main__":
    raise SystemExit(main())
