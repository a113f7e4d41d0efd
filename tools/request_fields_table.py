"""The README's tables of the request fields and their limits, generated from the request
models (app/api/protocol.py) so they cannot drift.

python -m tools.request_fields_table            # print the tables
python -m tools.request_fields_table --write    # rewrite them in README.md between the markers
python -m tools.request_fields_table --check    # exit 1 when README.md's tables are stale (a test)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app.api.protocol import MAX_TEXT_CHARS, SpeechRequest, SynthesizeRequest
from app.core.settings import Settings
from bark_core.voices import VOICE_ID_RE

BEGIN = "<!-- request-fields:begin (python -m tools.request_fields_table --write) -->"
END = "<!-- request-fields:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"
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


def render(readme: str) -> str:
    """`readme` with the text between the markers replaced by the current tables."""
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the markers {BEGIN!r} ... {END!r}")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{tables()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.request_fields_table")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the tables in README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when README.md is stale")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        print(tables())
        return 0
    current = README.read_text(encoding="utf-8")
    fresh = render(current)
    if args.write:
        README.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != current:
        print(
            "README.md's request fields are stale: run `python -m tools.request_fields_table --write`",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
