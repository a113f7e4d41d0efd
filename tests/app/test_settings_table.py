"""The README's settings table is generated from the Settings class and must be current."""

from __future__ import annotations

from app.core.settings import Settings
from tools import settings_table


def test_readme_table_is_current() -> None:
    assert settings_table.main(["--check"]) == 0, "run: python -m tools.settings_table --write"


def test_every_field_has_a_row_and_a_description() -> None:
    text = settings_table.table()
    for name, field in Settings.model_fields.items():
        assert f"`BARK_{name.upper()}`" in text
        assert field.description, f"{name} has no description"


def test_a_stale_table_is_detected() -> None:
    stale = f"intro\n{settings_table.BEGIN}\n| old |\n{settings_table.END}\nrest"
    fresh = settings_table.render(stale)
    assert fresh != stale and "BARK_REDIS_URL" in fresh and fresh.endswith("rest")
