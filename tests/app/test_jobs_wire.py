"""The typed values of issue 17 on the wire: a job's record and a chunk's kept generation."""

from __future__ import annotations

from app.queue.wire import ChunkGeneration, Done, Failed, JobRecord


def _as_redis(fields: dict[str, str] | dict[str, bytes]) -> dict[bytes, bytes]:
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}


def test_record_round_trips_and_workers_fields_update_it():
    record = JobRecord(id="j1", job='{"id":"j1"}', owner="abc123", created_at=10.5, ttl_s=60, attended=True)
    raw = _as_redis(record.to_hash())
    assert JobRecord.from_hash(raw) == record
    raw.update(_as_redis(JobRecord.started("w1", 2, 11.0)))
    raw.update(_as_redis(JobRecord.chunk_written(0, 480, 3)))
    raw.update(_as_redis(JobRecord.chunk_written(1, 960, 3)))
    raw[b"chunks_done"] = b"2"
    running = JobRecord.from_hash(raw)
    assert (running.state, running.worker, running.attempt, running.started_at) == ("running", "w1", 2, 11.0)
    assert running.chunk_samples == (480, 960) and running.n_chunks == 3 and not running.terminal
    raw.update(_as_redis(JobRecord.finished(Failed("cancelled", "cancelled by the client"), 12.0)))
    cancelled = JobRecord.from_hash(raw)
    assert cancelled.state == "cancelled" and cancelled.terminal and cancelled.finished_at == 12.0
    raw.update(_as_redis(JobRecord.finished(Failed("deadline_exceeded", "late"), 13.0)))
    assert JobRecord.from_hash(raw).state == "failed"
    raw.update(_as_redis(JobRecord.finished(Done(), 14.0)))
    assert JobRecord.from_hash(raw).error_type == ""


def test_chunk_samples_stop_at_the_first_gap():
    raw = _as_redis({"id": "j", "job": "{}", "chunk:0": "5", "chunk:2": "7"})
    assert JobRecord.from_hash(raw).chunk_samples == (5,)


def test_generations_round_trip_and_partial_ones_are_left_out():
    a = ChunkGeneration(0, b"\x01\x00", b"\x02\x00\x03\x00", b"\x04\x00" * 8)
    b = ChunkGeneration(1, b"\x05\x00", b"", b"")
    raw = _as_redis({**a.to_fields(), **b.to_fields()})
    assert ChunkGeneration.all_from_hash(raw) == {0: a, 1: b}
    del raw[b"1:fine"]
    assert ChunkGeneration.all_from_hash(raw) == {0: a}
