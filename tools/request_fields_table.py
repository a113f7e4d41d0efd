"""The README's tables of the request fields and their limits, generated from the request
models (app/api/protocol.py) so they cannot drift.

python -m tools.request_fields_table            # print the tables
python -m tools.request_fields_table --write    # rewrite them in README.md between the markers
python -m tools.request_fields_table --check    # exit 1 when README.md's tables are stale (a test)
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from app.api.protocol import MAX_TEXT_CHARS, SpeechRequest, SynthesizeRequest
from app.core.settings import Settings
from bark_core.voices import VOICE_ID_RE

from .readme_section import Section

BEGIN = "<!-- request-fields:begin (python -m tools.request_fields_table --write) -->"
END = "<!-- request-fields:end -->"
_BOUNDS = (("minimum", ">= "), ("exclusiveMinimum", "> "), ("maximum", "<= "), ("exclusiveMaximum", "< "))


def _variants(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"]


def _type(prop: dict[str, Any]) -> str:
    names = [v.get("type", "?") for v in _variants(prop)]
    return " or ".join(names) + (" or null" if "anyOf" in prop and len(prop["anyOf"]) > len(names) else "")


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _limits(prop: dict[str, Any]) -> str:
    parts = []
    for variant in _variants(prop):
        if "enum" in variant:
            parts.append(", ".join(f"`{v}`" for v in variant["enum"]))
        parts += [f"{sign}{_number(variant[key])}" for key, sign in _BOUNDS if key in variant]
        if "maxLength" in variant:
            parts.append(f"{variant.get('minLength', 0)}..{variant['maxLength']} characters")
    return "; ".join(parts)


def fields_table(model: type[BaseModel]) -> str:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    rows = ["| field | type | default | limits | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, prop in schema["properties"].items():
        default = "(required)" if name in required else f"`{json.dumps(prop.get('default'))}`"
        meaning = prop.get("description", "").replace("|", "\\|")
        rows.append(f"| `{name}` | {_type(prop)} | {default} | {_limits(prop)} | {meaning} |")
    return "\n".join(rows)


def limits() -> str:
    """The limits that are not one field's bounds."""
    body = Settings.model_fields["max_body_bytes"].default
    ws = Settings.model_fields["max_ws_message_bytes"].default
    upload = Settings.model_fields["max_upload_bytes"].default
    return "\n".join(
        [
            f"- `text` / `input`: 1 to {MAX_TEXT_CHARS:,} characters once surrounding whitespace is "
            "stripped.",
            "- `stream: true` takes every format; the websocket sends PCM frames whatever `format` says.",
            f"- Uploaded voice ids match `{VOICE_ID_RE.pattern}` and may not take a built-in id; "
            "built-in ids are the model's presets, as `GET /voices` lists them (`v2/en_speaker_6`).",
            f"- Bodies: JSON at most {body:,} bytes (`BARK_MAX_BODY_BYTES`), websocket messages "
            f"{ws:,} (`BARK_MAX_WS_MESSAGE_BYTES`), voice uploads {upload:,} (`BARK_MAX_UPLOAD_BYTES`).",
            "- Unknown fields are refused (422), and JSON types are strict: `true` is not a number.",
        ]
    )


def tables() -> str:
    return "\n".join(
        [
            "`POST /synthesize` (and the websocket's first message):",
            "",
            fields_table(SynthesizeRequest),
            "",
            "`POST /v1/audio/speech` (OpenAI's fields):",
            "",
            fields_table(SpeechRequest),
            "",
            limits(),
        ]
    )


SECTION = Section("python -m tools.request_fields_table", BEGIN, END, tables, "request fields")
render = SECTION.render
main = SECTION.main


if __name__ == "__main__":
    raise SystemExit(main())
