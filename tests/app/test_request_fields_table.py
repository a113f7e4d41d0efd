"""The README's request-field tables are generated from the request models and must be current."""

from __future__ import annotations

from app.api.protocol import SpeechRequest, SynthesizeRequest
from tools import request_fields_table


def test_readme_tables_are_current() -> None:
    assert request_fields_table.main(["--check"]) == 0, "run: python -m tools.request_fields_table --write"


def test_every_field_has_a_row_with_its_limits_and_a_description() -> None:
    text = request_fields_table.tables()
    for model in (SynthesizeRequest, SpeechRequest):
        for name, field in model.model_fields.items():
            assert f"| `{name}` |" in text
            assert field.description, f"{model.__name__}.{name} has no description"
    assert "| `top_k` | integer or null | `null` | >= 1; <= 10,000 |" in text
    assert "4,096 characters" in text


def test_a_stale_table_is_detected() -> None:
    stale = f"intro\n{request_fields_table.BEGIN}\n| old |\n{request_fields_table.END}\nrest"
    fresh = request_fields_table.render(stale)
    assert fresh != stale and "`max_duration_s`" in fresh and fresh.endswith("rest")
