"""The stage scheduler: lockstep without arrivals, catch-up with them, nobody held twice."""

from __future__ import annotations

from bark_core.scheduler import StageQueues


def _advance(q: StageQueues[str], stage: str, items: list[str]) -> None:
    nxt = {"semantic": "coarse", "coarse": "fine", "fine": "codec"}
    for item in items:
        if stage != "codec":
            q.put(nxt[stage], item)


def _run(q: StageQueues[str], arrivals: dict[int, list[str]]) -> list[tuple[str, list[str]]]:
    """Take stages until empty; `arrivals[k]` join at semantic before the k-th take."""
    log = []
    for k in range(100):
        for item in arrivals.get(k, []):
            q.put("semantic", item)
        taken = q.take()
        if taken is None:
            return log
        log.append(taken)
        _advance(q, *taken)
    raise AssertionError("did not drain")


def test_a_fixed_batch_moves_in_lockstep() -> None:
    log = _run(StageQueues(), {0: ["a", "b"]})
    assert log == [
        ("semantic", ["a", "b"]),
        ("coarse", ["a", "b"]),
        ("fine", ["a", "b"]),
        ("codec", ["a", "b"]),
    ]


def test_a_late_request_catches_up_and_shares_the_later_stages() -> None:
    # b arrives while a is at coarse: a waits one semantic run, then both share coarse and fine
    log = _run(StageQueues(), {0: ["a"], 1: ["b"]})
    assert log == [
        ("semantic", ["a"]),
        ("semantic", ["b"]),
        ("coarse", ["a", "b"]),
        ("fine", ["a", "b"]),
        ("codec", ["a", "b"]),
    ]


def test_a_held_request_is_not_held_again_at_the_same_stage() -> None:
    # a is held at coarse for b; c arrives then: a and b run coarse first, and c, two stages
    # behind, cannot join them, so it does not hold them at fine either
    log = _run(StageQueues(), {0: ["a"], 1: ["b"], 2: ["c"]})
    assert log == [
        ("semantic", ["a"]),
        ("semantic", ["b"]),
        ("coarse", ["a", "b"]),
        ("fine", ["a", "b"]),
        ("codec", ["a", "b"]),
        ("semantic", ["c"]),
        ("coarse", ["c"]),
        ("fine", ["c"]),
        ("codec", ["c"]),
    ]


def test_work_one_stage_behind_joins_once_then_the_held_stage_runs() -> None:
    q: StageQueues[str] = StageQueues()
    q.put("fine", "a")
    q.put("coarse", "c")
    assert q.take() == ("coarse", ["c"])  # a waits at fine for c
    q.put("fine", "c")
    q.put("coarse", "d")  # another one behind: a was held at fine already, so fine runs now
    assert q.take() == ("fine", ["a", "c"])
    assert q.take() == ("coarse", ["d"])


def test_decoded_audio_goes_out_first() -> None:
    q: StageQueues[str] = StageQueues()
    q.put("codec", "a")
    q.put("semantic", "b")
    assert q.take() == ("codec", ["a"])
    assert q.take() == ("semantic", ["b"])
    assert q.take() is None
