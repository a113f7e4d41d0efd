"""OpenAI voice names -> Bark presets: the one table, shown by GET /voices and the README.

Bark's English v2 presets are speakers 0..9 (9 is the one female voice). OpenAI's first ten
names, alphabetically, take speakers 0..9 in order; `verse`, added later, takes speaker 6,
the preset Suno's own examples use. A request may name a Bark preset id directly instead.
"""

from __future__ import annotations

OPENAI_VOICES: dict[str, str] = {
    "alloy": "v2/en_speaker_0",
    "ash": "v2/en_speaker_1",
    "ballad": "v2/en_speaker_2",
    "coral": "v2/en_speaker_3",
    "echo": "v2/en_speaker_4",
    "fable": "v2/en_speaker_5",
    "onyx": "v2/en_speaker_6",
    "nova": "v2/en_speaker_7",
    "sage": "v2/en_speaker_8",
    "shimmer": "v2/en_speaker_9",
    "verse": "v2/en_speaker_6",
}

# Model names the OpenAI SDK's users pass; all are served by the one Bark model loaded.
OPENAI_MODELS: frozenset[str] = frozenset(
    {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "bark", "suno/bark", "suno/bark-small"}
)


def resolve_voice(name: str) -> str:
    """An OpenAI name (case-insensitive) or a preset id, as given."""
    return OPENAI_VOICES.get(name.lower(), name)
