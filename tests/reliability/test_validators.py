"""Property tests of the input validators: preset ids never touch the file system, accepted
text is within limits (and the published schema says exactly which), forged preset arrays are
refused before anything large is allocated."""

from __future__ import annotations

import io
import json
import re
import sys
import threading
import tracemalloc
import unicodedata
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.api.protocol import MAX_TEXT_CHARS, TEXT_PATTERN, SpeechRequest, SynthesizeRequest
from app.queue.keys import Keys
from app.queue.wire import BUILTIN_ETAG
from app.worker.voice_cache import VoiceCache
from bark_core.errors import BarkError
from bark_core.voices import VoiceLibrary

from .reliability_kit import new_prefix

# --- a file-system witness ------------------------------------------------------------------

_FS_EVENTS = (
    "open",
    "os.listdir",
    "os.scandir",
    "os.remove",
    "os.rename",
    "os.mkdir",
    "os.rmdir",
    "os.symlink",
    "os.chmod",
    "shutil.copyfile",
    "shutil.rmtree",
)
_seen: list[str] | None = None  # paths touched while a `watch` is open (any thread)
_lock = threading.Lock()


# The interpreter's own reads (lazy imports, package metadata) are not the code under test. A
# path built from a caller's id would start with the checkpoint's directory (or be relative).
_INTERPRETER = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})


def _audit(event: str, args: tuple) -> None:
    if _seen is not None and event in _FS_EVENTS and args:
        path = args[0]
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        if isinstance(path, str | Path) and not str(path).startswith(_INTERPRETER):
            with _lock:
                _seen.append(str(path))


sys.addaudithook(_audit)  # cannot be removed; it only records while a watch is open
# Hypothesis's explain phase traces lines and reads source files (from every thread).
NO_EXPLAIN = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]


@contextmanager
def watch() -> Iterator[list[str]]:
    global _seen
    seen: list[str] = []
    _seen = seen
    try:
        yield seen
    finally:
        _seen = None


# Ids as an attacker would write them: path pieces, traversal, NUL, absolute paths, escapes.
_PIECES = st.sampled_from(
    [
        "/",
        "..",
        "\x00",
        "\\",
        "~",
        ".",
        "%2e%2e",
        "%2f",
        "v2",
        "etc",
        "passwd",
        "en_speaker_1",
        "speaker_embeddings",
        "C:",
        ":",
        "*",
        " ",
    ]
)
path_like_ids = st.one_of(
    st.lists(_PIECES, min_size=1, max_size=8).map("".join),
    st.text(min_size=1, max_size=40),
    st.builds(lambda a, b: f"{a}/../{b}", st.text(max_size=8), st.text(max_size=8)),
)


def _bad(voice_id: str) -> bool:
    return any(part in voice_id for part in ("/", "..", "\x00", "\\")) or voice_id.startswith("~")


@pytest.fixture(scope="module")
def library(tiny_checkpoint: Path) -> VoiceLibrary:
    return VoiceLibrary.from_checkpoint(tiny_checkpoint)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=NO_EXPLAIN,
)
@given(voice_id=path_like_ids)
def test_worker_voice_lookup_never_touches_the_file_system_for_a_bad_id(
    voice_id: str, library: VoiceLibrary, rel_redis: str
) -> None:
    """The worker's preset lookup (Redis, then the checkpoint's own index), with a real Redis."""
    if voice_id in library:
        return  # a real built-in id (hypothesis may find one): it is allowed to load
    cache = VoiceCache(redis.Redis.from_url(rel_redis), Keys("fs-probe"), library, "tiny")
    with watch() as seen:
        for etag in (BUILTIN_ETAG, None, "x"):
            with pytest.raises(BarkError):
                cache.get(voice_id, etag)
    assert seen == [], f"{voice_id!r} led to {seen}"


def test_builtin_preset_loads_only_from_inside_the_checkpoint(library, tiny_checkpoint, rel_redis):
    cache = VoiceCache(redis.Redis.from_url(rel_redis), Keys(new_prefix("fs")), library, "tiny")
    with watch() as seen:
        cache.get(library.ids()[0], BUILTIN_ETAG)
    root = str(tiny_checkpoint.resolve())
    assert seen and all(str(Path(p).resolve()).startswith(root) for p in seen), seen


@pytest.fixture(scope="module")
def api_no_workers(rel_redis: str) -> Iterator[str]:
    """An in-process API (so the audit hook sees what it does) on a prefix with no worker."""
    from tests.support.servers import LiveServer, make_settings

    with LiveServer(make_settings(rel_redis, new_prefix("val"))) as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for voice_id in ("ok", "/"):  # warm: lazy one-time reads are not a request's doing
                _voice_requests(http, voice_id)  # (FastAPI's endpoint source, mime.types)
        yield server.url


def _voice_requests(http: httpx.Client, voice_id: str) -> list[httpx.Response]:
    """Every route that takes a voice id from the caller."""
    return [
        http.post("/synthesize", json={"text": "hi", "voice": voice_id}),
        http.post("/v1/audio/speech", json={"model": "tts-1", "input": "hi", "voice": voice_id}),
        http.post("/voices", data={"id": voice_id}, files={"file": ("p.npz", b"PK")}),
        # '/' and '.' kept raw, so traversal reaches the router as a client would send it
        http.request("DELETE", "/voices/" + quote(voice_id, safe="/.")),
    ]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=NO_EXPLAIN,
)
@given(voice_id=path_like_ids)
def test_api_never_touches_the_file_system_for_a_voice_id(voice_id: str, api_no_workers: str) -> None:
    with httpx.Client(base_url=api_no_workers, timeout=10) as http, watch() as seen:
        responses = _voice_requests(http, voice_id)
    assert seen == [], f"{voice_id!r} led to {seen}"
    for r in responses:
        assert r.status_code < 500 or r.status_code == 503, (r.request, r.text)
    if _bad(voice_id):
        assert responses[2].status_code == 422  # never stored under such an id


# --- text limits -------------------------------------------------------------------------

_WS = [c for c in map(chr, range(0x110000)) if c.isspace()]
texts = st.one_of(
    st.text(max_size=64),
    st.text(alphabet=st.sampled_from(_WS), max_size=16),
    st.builds(
        lambda pad, n, pad2: pad + "x" * n + pad2,
        st.text(st.sampled_from(_WS), max_size=4),
        st.integers(MAX_TEXT_CHARS - 2, MAX_TEXT_CHARS + 2),
        st.text(st.sampled_from(_WS), max_size=4),
    ),
    st.builds(lambda a, b: a + "\u2028" + b, st.text(max_size=8), st.text(max_size=8)),
    st.text(alphabet=st.sampled_from(["\x00", "\u200b", "\ufeff", "\u00ad", " ", "a"]), max_size=8),
)


def _speakable(c: str) -> bool:
    """Not whitespace, and not a BMP control or format character (NUL, zero-width, BOM)."""
    silent = ord(c) < 0x10000 and unicodedata.category(c) in ("Cc", "Cf")
    return not (c.isspace() or silent)


@settings(max_examples=300, deadline=None)
@given(text=texts)
def test_accepted_text_is_within_limits_and_the_schema_says_so(text: str) -> None:
    stripped = text.strip()
    for model, field in ((SynthesizeRequest, "text"), (SpeechRequest, "input")):
        extra = {"model": "tts-1", "voice": "alloy"} if model is SpeechRequest else {}
        try:
            accepted = getattr(model(**{field: text}, **extra), field)
        except ValueError:
            accepted = None
        if accepted is not None:
            assert accepted == stripped and 1 <= len(accepted) <= MAX_TEXT_CHARS
            assert any(_speakable(c) for c in accepted), repr(accepted)
        else:
            unspeakable = not any(_speakable(c) for c in stripped)
            assert not stripped or len(stripped) > MAX_TEXT_CHARS or unspeakable
        # The JSON Schema pattern published in /openapi.json agrees with the validator.
        assert (re.search(TEXT_PATTERN, text) is not None) == (accepted is not None), repr(text)


# --- forged preset arrays ----------------------------------------------------------------

_DTYPES = ["<i8", "<i4", "<u2", "|u1", ">i8", "<f4", "<f8", "|O", "<c16", "|V16", "<U8"]
shapes = st.lists(st.one_of(st.integers(0, 4096), st.integers(2**20, 2**62)), min_size=0, max_size=4)


def _npy(shape: list[int], dtype: str, fortran: bool, data: bytes) -> bytes:
    header = {"descr": dtype, "fortran_order": fortran, "shape": tuple(shape)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + data


def _npz(members: dict[str, bytes], compress: bool) -> bytes:
    buffer = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", mode) as archive:
        for name, payload in members.items():
            archive.writestr(f"{name}.npy", payload)
    return buffer.getvalue()


@contextmanager
def peak_allocation() -> Iterator[list[int]]:
    """Peak bytes Python and numpy allocated meanwhile (in every thread, the API's too)."""
    out: list[int] = []
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield out
    finally:
        out.append(tracemalloc.get_traced_memory()[1] - base)
        tracemalloc.stop()


ALLOC_LIMIT = 8 * 1024 * 1024  # generous: the largest valid preset is ~150 KB of int64


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=shapes,
    dtype=st.sampled_from(_DTYPES),
    fortran=st.booleans(),
    data_len=st.integers(0, 4096),
    key=st.sampled_from(["semantic_prompt", "coarse_prompt", "fine_prompt"]),
    compress=st.booleans(),
)
def test_forged_array_headers_are_refused_before_allocation(
    api_no_workers: str, shape, dtype, fortran, data_len, key, compress
) -> None:
    member = _npy(shape, dtype, fortran, b"\x01" * data_len)
    # A deflated member may also claim far more data than it carries: a 64 MiB zip bomb tail.
    members = {key: member + (b"\x00" * (64 << 20) if compress and data_len % 7 == 0 else b"")}
    body = _npz(members, compress)
    with httpx.Client(base_url=api_no_workers, timeout=30) as http, peak_allocation() as peak:
        r = http.post("/voices", data={"id": "forged"}, files={"file": ("p.npz", body)})
    assert r.status_code in (413, 422), r.text  # never stored: one array alone is no preset
    assert peak[0] < ALLOC_LIMIT + 2 * len(body), f"peak {peak[0]} bytes for {shape} {dtype}"


def test_headers_checked_before_data_a_worked_example(api_no_workers: str) -> None:
    """(8, 2**40) int64 would be 64 TiB; the upload is a few hundred bytes and refused at once."""
    body = _npz({"fine_prompt": _npy([8, 2**40], "<i8", False, b"")}, compress=False)
    with httpx.Client(base_url=api_no_workers, timeout=30) as http, peak_allocation() as peak:
        r = http.post("/voices", data={"id": "huge"}, files={"file": ("p.npz", body)})
    assert r.status_code == 422 and r.json()["error"]["param"] == "fine_prompt"
    assert peak[0] < ALLOC_LIMIT
    json.dumps({"peak_bytes": peak[0]})
