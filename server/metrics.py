"""The one metrics module: every Prometheus series the server exports, on its own registry.

Own registry (not the global one) so several apps in one process (tests) never collide. Base units
(seconds, bytes), ``_total`` counters, and bounded labels only: endpoint names, task names, status
codes. Adapter ids are never labels: the store is operator-controlled but unbounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

NAMESPACE = "elp"

# ``*_created`` samples double the series count and no dashboard uses them
disable_created_metrics()

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_QUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)
_BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_TASKS_PER_BATCH_BUCKETS = (1, 2, 3, 4)
_SETS_PER_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16)
_LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_CONFIDENCE_BUCKETS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)

#: every series name the server exports (tests check dashboards against this list)
EXPORTED_METRIC_NAMES: tuple[str, ...] = (
    "elp_requests_total",
    "elp_errors_total",
    "elp_request_duration_seconds",
    "elp_audio_seconds_total",
    "elp_voiceless_audio_seconds_total",
    "elp_answer_confidence",
    "elp_queue_wait_seconds",
    "elp_inference_rows_total",
    "elp_batch_size",
    "elp_batch_tasks",
    "elp_batch_adapter_sets",
    "elp_batch_duration_seconds",
    "elp_batch_failures_total",
    "elp_queue_depth",
    "elp_abandoned_requests_total",
    "elp_decoder_restarts_total",
    "elp_heap_trims_total",
    "elp_adapter_cache_hits_total",
    "elp_adapter_cache_misses_total",
    "elp_adapter_loads_total",
    "elp_adapter_load_failures_total",
    "elp_adapter_evictions_total",
    "elp_adapter_load_seconds",
    "elp_resident_adapters",
    "elp_resident_adapter_bytes",
    "elp_process_resident_memory_bytes",
    "elp_gpu_memory_allocated_bytes",
    "elp_gpu_memory_reserved_bytes",
    "elp_ready",
    "elp_streams_open",
    "elp_stream_utterances_total",
    "elp_stream_answer_delay_seconds",
    "elp_streams_closed_total",
)


class ServerMetrics:
    """All collectors of one app instance, registered on a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "requests", "HTTP requests answered, by endpoint and status code", ["endpoint", "code"],
            namespace=NAMESPACE, registry=r,
        )
        self.errors = Counter(
            "errors", "Error answers, by endpoint and error code (docs/API.md): no_speech apart from "
            "invalid_request, invalid_audio apart from a decoder crash", ["endpoint", "error"],
            namespace=NAMESPACE, registry=r,
        )
        self.request_duration = Histogram(
            "request_duration_seconds", "Time from request start to response start, by endpoint",
            ["endpoint"], namespace=NAMESPACE, buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.audio_seconds = Counter(
            "audio_seconds", "Seconds of audio in answered task requests, by endpoint (against "
            "request_duration_seconds: how fast audio is served, long recordings included)", ["endpoint"],
            namespace=NAMESPACE, registry=r,
        )
        self.voiceless_audio_seconds = Counter(
            "voiceless_audio_seconds", "Seconds of answered audio that the speech gate found no voice in and no model "
            "read, by endpoint: /asr clips answered with no words, long recordings' stretches left out (a share of "
            "audio_seconds; a rising share: a muted or humming source)", ["endpoint"], namespace=NAMESPACE, registry=r,
        )
        self.answer_confidence = Histogram(
            "answer_confidence", "How sure the model was of each answer that says (TaskSpec.answer_confidence: /asr, "
            "its words' mean confidence, on each set's own scale; /identify, the best enrolled speaker's score), "
            "by endpoint: a falling median points at audio "
            "unlike what the set learnt (a new microphone, accent or channel), or at a new mix of sets",
            ["endpoint"], namespace=NAMESPACE,
            buckets=_CONFIDENCE_BUCKETS, registry=r,
        )
        self.queue_wait = Histogram(
            "queue_wait_seconds", "Time a task request waited in the batching queue, by task",
            ["task"], namespace=NAMESPACE, buckets=_QUEUE_BUCKETS, registry=r,
        )
        self.inference_rows = Counter(
            "inference_rows", "Waveform rows run through the model, by task", ["task"],
            namespace=NAMESPACE, registry=r,
        )
        self.batch_size = Histogram(
            "batch_size", "Waveform rows per model call", namespace=NAMESPACE,
            buckets=_BATCH_SIZE_BUCKETS, registry=r,
        )
        self.batch_tasks = Histogram(
            "batch_tasks", "Distinct tasks mixed in one model call", namespace=NAMESPACE,
            buckets=_TASKS_PER_BATCH_BUCKETS, registry=r,
        )
        self.batch_adapter_sets = Histogram(
            "batch_adapter_sets", "Distinct adapter sets mixed in one model call (batch composition)",
            namespace=NAMESPACE, buckets=_SETS_PER_BATCH_BUCKETS, registry=r,
        )
        self.batch_duration = Histogram(
            "batch_duration_seconds", "Wall time of one model call", namespace=NAMESPACE,
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.batch_failures = Counter(
            "batch_failures", "Model calls that raised (their requests got 500)", namespace=NAMESPACE, registry=r
        )
        self.queue_depth = Gauge(
            "queue_depth", "Requests waiting for the model", namespace=NAMESPACE, registry=r
        )
        self.decoder_restarts = Counter(
            "decoder_restarts", "Decoding processes that stopped and were replaced (ELP_DECODE_POOL=processes): "
            "a crash in the audio decoder, e.g. on a crafted upload", namespace=NAMESPACE, registry=r,
        )
        self.heap_trims = Counter(
            "heap_trims", "Freed heap memory given back to the OS once the model had gone idle (ELP_IDLE_TRIM_S)",
            namespace=NAMESPACE, registry=r,
        )
        self.abandoned_requests = Counter(
            "abandoned_requests", "Queued requests dropped unrun because their client disconnected",
            namespace=NAMESPACE, registry=r,
        )
        self.adapter_cache_hits = Counter(
            "adapter_cache_hits", "Adapter lookups served from memory", namespace=NAMESPACE, registry=r
        )
        self.adapter_cache_misses = Counter(
            "adapter_cache_misses", "Adapter lookups that needed a load", namespace=NAMESPACE, registry=r
        )
        self.adapter_loads = Counter(
            "adapter_loads", "Adapter sets loaded from disk", namespace=NAMESPACE, registry=r
        )
        self.adapter_load_failures = Counter(
            "adapter_load_failures", "Adapter set loads that failed (corrupt, mismatched)",
            namespace=NAMESPACE, registry=r,
        )
        self.adapter_evictions = Counter(
            "adapter_evictions", "Adapter sets dropped from memory (LRU, stale or admin)",
            namespace=NAMESPACE, registry=r,
        )
        self.adapter_load_seconds = Histogram(
            "adapter_load_seconds", "Time to read, verify and register one adapter set",
            namespace=NAMESPACE, buckets=_LOAD_BUCKETS, registry=r,
        )
        self.resident_adapters = Gauge(
            "resident_adapters", "Adapter set versions held in memory", namespace=NAMESPACE, registry=r
        )
        self.resident_adapter_bytes = Gauge(
            "resident_adapter_bytes", "Tensor bytes of resident adapter sets", namespace=NAMESPACE, registry=r
        )
        self.process_resident_memory = Gauge(
            "process_resident_memory_bytes", "Resident set size of the server process",
            namespace=NAMESPACE, registry=r,
        )
        process = psutil.Process()
        self.process_resident_memory.set_function(lambda: float(process.memory_info().rss))
        self.gpu_memory_allocated = Gauge(
            "gpu_memory_allocated_bytes", "torch.cuda.memory_allocated (0 without CUDA)",
            namespace=NAMESPACE, registry=r,
        )
        self.gpu_memory_reserved = Gauge(
            "gpu_memory_reserved_bytes", "torch.cuda.memory_reserved (0 without CUDA)",
            namespace=NAMESPACE, registry=r,
        )
        self.streams_open = Gauge(
            "streams_open", "Live streams (WebSocket) open now, by endpoint", ["endpoint"],
            namespace=NAMESPACE, registry=r,
        )
        self.stream_utterances = Counter(
            "stream_utterances", "Answers sent on live streams, by endpoint and kind (partial: the utterance still "
            "being spoken; final: an utterance that ended)", ["endpoint", "kind"], namespace=NAMESPACE, registry=r,
        )
        self.stream_answer_delay = Histogram(
            "stream_answer_delay_seconds", "From the moment the server heard a live stream's utterance end (its "
            "pause, a cut or the stream's end) to the moment its answer was sent, by endpoint: what a speaker "
            "waits for after the pause", ["endpoint"], namespace=NAMESPACE, buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.streams_closed = Counter(
            "streams_closed", "Live streams ended, by endpoint and reason (client: it said end or hung up; idle; "
            "limit: too long or too large a message; invalid: a malformed message or parameter; overloaded; "
            "refused: too many streams or a foreign page; error: a server fault)", ["endpoint", "reason"],
            namespace=NAMESPACE, registry=r,
        )
        self.ready = Gauge("ready", "1 once the backbone and default adapters are resident",
                           namespace=NAMESPACE, registry=r)

    def watch_cuda(self, device: str) -> None:
        """Export GPU memory of ``device`` at scrape time (only called when the model is on CUDA)."""
        import torch

        def reader(fn: Callable[[str], int]) -> Callable[[], float]:
            return lambda: float(fn(device))

        self.gpu_memory_allocated.set_function(reader(torch.cuda.memory_allocated))
        self.gpu_memory_reserved.set_function(reader(torch.cuda.memory_reserved))

    def stream_exposition(self) -> bytes:
        """Only the live-stream series: what a Ray Serve ingress reports (it holds streams, runs no model)."""
        collectors = (self.streams_open, self.stream_utterances, self.stream_answer_delay, self.streams_closed)

        class _Streams:
            def collect(self) -> Any:
                for collector in collectors:
                    yield from collector.collect()

        return generate_latest(_Streams())  # type: ignore[arg-type]  # any object with collect()

    def exposition(self) -> tuple[bytes, str]:
        """Text exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
