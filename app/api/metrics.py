"""Prometheus metrics of the API process.

Worker-side timings reach us inside the job events (each chunk carries its per-stage
seconds, `done` its wall time), so one scrape of the API sees the whole pipeline without a
push gateway. Each app instance owns its registry, so tests can build many apps.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..queue.wire import Chunk, Done

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300)
_RTF_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 25, 50)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "bark_http_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.jobs = Counter(
            "bark_jobs", "Synthesis jobs by outcome (done, error type, cancelled)", ["outcome"], registry=r
        )
        self.queue_waiting = Gauge("bark_queue_waiting", "Jobs queued, not started", registry=r)
        self.queue_running = Gauge("bark_queue_running", "Jobs held by workers", registry=r)
        self.queue_dead = Gauge("bark_queue_dead_letters", "Dead-lettered jobs", registry=r)
        self.workers = Gauge("bark_workers_live", "Workers with a live heartbeat", registry=r)
        self.stage_seconds = Histogram(
            "bark_stage_seconds",
            "Worker seconds per text chunk and stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_batch = Histogram(
            "bark_stage_batch_rows",
            "Rows in the batched stage run that carried a text chunk",
            ["stage"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.rtf = Histogram(
            "bark_real_time_factor",
            "Generation seconds per second of audio (lower is faster)",
            buckets=_RTF_BUCKETS,
            registry=r,
        )
        self.time_to_first_audio = Histogram(
            "bark_time_to_first_audio_seconds",
            "Submission to first audio chunk",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "bark_queue_wait_seconds",
            "Submission to a worker starting the job",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter("bark_audio_seconds", "Seconds of audio delivered", registry=r)
        # chunk checks (issue 16)
        self.checks_failed = Counter(
            "bark_chunk_checks_failed", "Checks failed by an attempt at a chunk", ["kind"], registry=r
        )
        self.chunk_retries = Counter(
            "bark_chunk_retries", "Chunks generated again after a failed check", registry=r
        )
        self.chunks_all_failed = Counter(
            "bark_chunks_all_attempts_failed", "Chunks sent with every attempt failing a check", registry=r
        )
        self.trimmed_seconds = Counter(
            "bark_chunk_trimmed_seconds", "Leading and trailing non-speech trimmed from chunks", registry=r
        )

    def observe_chunk(self, chunk: Chunk) -> None:
        for stage, seconds in chunk.stage_seconds.items():
            self.stage_seconds.labels(stage).observe(float(seconds))
        for stage, rows in chunk.stage_batch.items():
            self.stage_batch.labels(stage).observe(int(rows))
        for check in chunk.checks:
            if not check.passed:
                self.checks_failed.labels(check.kind).inc()
        self.chunk_retries.inc(max(chunk.attempts - 1, 0))
        if chunk.all_failed:
            self.chunks_all_failed.inc()
        self.trimmed_seconds.inc(max(chunk.trimmed_s, 0.0))

    def observe_done(self, done: Done, audio_seconds: float) -> None:
        self.jobs.labels("done").inc()
        self.audio_seconds.inc(audio_seconds)
        if done.rtf is not None:
            self.rtf.observe(float(done.rtf))
