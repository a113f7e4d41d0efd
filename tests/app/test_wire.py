"""Every message that crosses Redis decodes to exactly what was encoded, and tolerates fields a
newer version adds."""

from __future__ import annotations

import json

import pytest

from app.queue.wire import (
    WIRE_VERSION,
    BuiltinVoices,
    Chunk,
    Done,
    Failed,
    Job,
    Started,
    WorkerInfo,
    decode_event,
    encode_event,
    is_terminal,
)


def _redis_form(fields: dict[str, str | bytes]) -> dict[bytes, bytes]:
    """What redis-py hands back for an XADD of `fields`: bytes keys and values."""
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}


def test_job_round_trips() -> None:
    job = Job("j1", "Hello.", "v2/en_speaker_6", "builtin", {"text_temp": 0.0}, 7, 1.5, 2.5, "r1")
    fields = job.to_fields()
    assert json.loads(fields["job"])["v"] == WIRE_VERSION
    assert Job.from_fields(_redis_form(fields)) == job


@pytest.mark.parametrize(
    "event",
    [
        Started("w1", attempt=2, batch=3),
        Chunk(4, b"\x01\x00\xff\x7f", "Hi.", 5, {"semantic": 0.5}, {"semantic": 2}),
        Done(1.25, 30_000, 2, 3.5, 2.8, "w1", 1),
        Failed("queue_full", "busy", "text", 12.5),
    ],
)
def test_events_round_trip(event: Started | Chunk | Done | Failed) -> None:
    assert decode_event(_redis_form(encode_event(event))) == event


def test_terminal_events() -> None:
    assert [is_terminal(e) for e in (Started(), Chunk(0), Done(), Failed("x", "y"))] == [
        False,
        False,
        True,
        True,
    ]


def test_unknown_fields_are_ignored_and_unknown_kinds_refused() -> None:
    fields = _redis_form(encode_event(Done(rtf=0.5)))
    fields[b"meta"] = json.dumps({**json.loads(fields[b"meta"]), "from_the_future": 1}).encode()
    assert decode_event(fields) == Done(rtf=0.5)
    with pytest.raises(ValueError, match="unknown event type"):
        decode_event({b"type": b"progress", b"meta": b"{}"})


def test_worker_info_and_builtin_voices_round_trip() -> None:
    info = WorkerInfo("w1", "host", 12, "busy", ("a", "b"), 3, 1.0, 2.0, "m", "cpu", "float32", True, 4)
    assert WorkerInfo.from_json(info.to_json()) == info and info.ready
    voices = BuiltinVoices("m", True, frozenset({"v2/en_speaker_6", "announcer"}))
    assert BuiltinVoices.from_json(voices.to_json()) == voices
    assert BuiltinVoices.from_json(None) == BuiltinVoices()
