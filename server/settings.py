"""The one settings object of the server.

Every knob lives here once: environment variables (prefix ``ELP_``), the ``elp-server`` CLI flags
(generated from these fields, flags override env), the app factory and docker-compose all read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from elp.tasks import TASKS as REGISTERED_TASKS
from elp.tasks.asr import normalise_rescoring

MIB = 1024 * 1024

#: endpoint name -> the ``task`` written in an adapter set's config, from the task registry
TASKS: dict[str, str] = {spec.endpoint: spec.name for spec in REGISTERED_TASKS}


def default_adapter_setting(endpoint: str) -> str:
    """The settings field (and ``ELP_`` env name, upper-cased) of an endpoint's default adapter id."""
    return f"default_{endpoint}_adapter"


class ServerSettings(BaseSettings):
    """Server configuration without the per-task fields (``Settings`` adds them from the registry)."""

    model_config = SettingsConfigDict(env_prefix="ELP_", extra="ignore", validate_default=True)

    # model
    backbone: str = Field("models/whisper-base", description="backbone folder or hub id")
    device: str = Field("cpu", description="cpu, cuda, cuda:N, or auto (cuda when available)")
    dtype: Literal["auto", "float32", "float16", "bfloat16", "int8"] = Field(
        "auto",
        description="backbone dtype (auto: int8 on a CPU with VNNI for a backbone with an int8 calibration, such "
        "as the embedded Whisper base, else float32; bfloat16: ~2x on CPUs with AVX512-BF16 or AMX, and GPUs; "
        "int8: int8 weights in the encoder layers on a CPU, adapters and heads stay float32: docs/server.md, "
        "Precision)",
    )

    # adapter store and cache
    adapters_dir: Path = Field(Path("adapters_store"), description="folder of adapter set folders")
    adapter_cache_bytes: int = Field(1024 * MIB, ge=0, description="budget of resident adapter tensors (bytes)")
    idle_trim_s: float = Field(
        1.0, ge=0, description="once the model has had no batch for this long after some work, give the heap's freed "
        "memory back to the OS (glibc's malloc_trim; 0 = never): docs/server.md, memory"
    )
    speakers_dir: Path = Field(Path("speakers_store"), description="folder of enrolled speaker embeddings")
    speakers_url: SecretStr | None = Field(
        None, description="postgresql://user:pass@host/db: enrolled speakers in PostgreSQL instead of "
        "speakers_dir, shared by every replica (docs/ray.md); unset = the folder"
    )
    verify_threshold: float = Field(
        0.5, ge=-1.0, le=1.0, description="threshold when a verification set has no calibrated one"
    )

    # batching
    max_batch_size: int = Field(
        0, ge=0, description="most waveform rows in one batch (0 = auto: 4 on a CPU, where rows cost no less "
        "batched and small batches keep two model workers evenly busy; 64 on a GPU, where a batch costs its "
        "operators more than its rows)",
    )
    max_batch_audio_s: float = Field(
        0.0, ge=0, description="most padded audio in one batch, in seconds: rows x the longest clip; a single "
        "request larger than that still runs, alone (0 = auto: no bound on a CPU, where at most 4 rows run; on a "
        "GPU 640 = the 64 rows of 1-10 s clips measured on an H200, so 30 s clips form batches of 21 rows and "
        "one call's activations stay within 1.33x what the former 16-row default could pad)",
    )
    max_wait_ms: float = Field(10.0, ge=0, description="how long the first request waits for company")
    batch_wait: Literal["while-incoming", "always"] = Field(
        "while-incoming",
        description="when a batch waits up to max_wait_ms for company: while another request is being "
        "decoded, or always (the classic fixed queue delay)",
    )
    batch_length_ratio: float | None = Field(
        None, ge=0, le=1,
        description="shortest/longest clip in one model call (padding is wasted compute; 0 = any mix); "
        "unset = 0.9 on a CPU (batching buys nothing there) and 0 on a GPU (any mix: the padding is cheaper there "
        "than a second call)",
    )
    batch_policy: Literal["cost", "length"] = Field(
        "length",
        description="how batches form: from a cost model of padded frames timed on the loaded model (cost), "
        "or the oldest request plus those within batch_length_ratio of its length (length, the default: it "
        "served more req/s than cost on a quiet 2-core CPU, benchmarks/README.md)",
    )
    batch_latency_bound_ms: float = Field(
        2000.0, gt=0,
        description="cost policy: a request queued this long is taken first, and no batch is predicted to run "
        "longer than half of it, so short clips never starve behind long ones",
    )
    batch_calibration_s: float = Field(
        3.0, ge=0,
        description="cost policy: seconds spent timing batches of the loaded model at start-up, before ready "
        "(0 = start from a prior and learn from served batches only)",
    )
    adapter_routing: Literal["per-group", "gathered"] = Field(
        "per-group",
        description="how a mixed batch reaches each row's E-adapters: one set at a time, or gathered weights "
        "and batched matmuls (fewer operators for mixed batches; opt-in: on an H200 a 4-set batch took 1.81x a "
        "one-set batch gathered vs 1.99x per group, but the server's req/s stayed within the spread: "
        "benchmarks/README.md)",
    )
    front_end: Literal["auto", "batched", "per_row"] = Field(
        "auto",
        description="the backbone's front end (log-mel / CNN) for a batch: one batched call or a loop over rows; "
        "auto = batched on CUDA, per row on a CPU (where batching computes the padding: benchmarks/frontend.py)",
    )
    model_workers: int = Field(
        0, ge=0, le=16,
        description="threads forming and running batches on the one model, sharing the intra-op threads "
        "(0 = auto: 2 on a CPU with 2+ cores, where two batches side by side served 1.2-1.4x the req/s of one "
        "at concurrency 16-64 in benchmarks/README.md; 1 on a GPU, where 2 served no more on an H200: one "
        "process's interpreter is the limit there)",
    )
    torch_threads: int = Field(
        0, ge=0, description="torch intra-op threads (0 = torch's default split evenly over model_workers)"
    )
    max_queue: int = Field(256, ge=1, description="queued requests before 503 overloaded")
    request_deadline_s: float = Field(30.0, gt=0, description="queue wait after which a request gets 504")
    shutdown_drain_s: float = Field(10.0, ge=0, description="how long shutdown keeps answering queued work")
    decode_workers: int = Field(2, ge=1, description="threads or processes decoding and resampling uploads")
    decode_pool: Literal["threads", "processes"] = Field(
        "threads",
        description="where uploads are decoded: processes keep a decoder crash on a crafted file off the server "
        "and decoding off its interpreter, at the cost of copies between processes (on 2 CPU cores 0.89x the "
        "req/s of threads: benchmarks/README.md); threads share the server's process",
    )
    asr_beam_width: int = Field(
        0, ge=0, le=1024,
        description="beam width of every ASR set's LM search (0 = each set's own, the width its fusion was "
        "tuned at; wider is more accurate and slower: README, asr-default)",
    )
    asr_rescoring: Literal["auto", "true", "false"] = Field(
        "auto",
        description="ASR sets that carry a second pass (Whisper's decoder rescoring the beam's best transcripts: "
        "asr-default) run it: fewer word errors on real speech (README). auto: beside an encoder on the CPU, where "
        "this CPU computes it in bfloat16 natively (AVX512-BF16 or AMX; ~60 ms more a clip, 1.6x on 1-10 s clips) "
        "or else in float32 on another x86 CPU beside the encoder ELP_DTYPE=auto picks there (about 1.5x), off "
        "elsewhere (ARM, a GPU encoder); true: always; false: the beam's best",
    )
    post_workers: int = Field(
        0, ge=0, le=64,
        description="workers running the post-processing that is worth taking off the model worker (ASR "
        "language-model beam search), so it goes on to the next batch (0 = on the worker, after each batch; "
        "set 1-4 on a GPU)",
    )
    post_pool: Literal["processes", "threads"] = Field(
        "processes",
        description="what the post_workers are: processes (the search holds no GIL the model worker needs) or "
        "threads (no second interpreter, for rare searches)",
    )
    beam_search_processes: int = Field(
        0, ge=0,
        description="the earlier name of post_workers with post_pool=processes (used when post_workers is 0)",
    )

    # request limits
    max_upload_bytes: int = Field(10 * MIB, ge=1, description="largest request body")
    upload_timeout_s: float = Field(
        30.0, gt=0,
        description="seconds from the first body read until the whole request body must have arrived, else 408",
    )
    max_duration_s: float = Field(30.0, gt=0, description="longest clip")
    max_long_form_s: float = Field(
        300.0, ge=0,
        description="longest recording of a task that transcribes long recordings in segments (/asr): cut at "
        "pauses into segments that are rows of the batches; 0 = such tasks take max_duration_s like the others "
        "(/diarize then reads recordings within max_duration_s). "
        "Its decoding budget: at most max_long_form_s x 96,000 samples (all channels)",
    )
    min_duration_s: float = Field(0.1, ge=0, description="shortest clip")
    min_sample_rate: int = Field(8000, ge=1, description="lowest sample rate an upload may declare (Hz); lower: 400")
    max_sample_rate: int = Field(
        192000, ge=1, le=768000,
        description="highest sample rate an upload may declare (Hz); higher: 400. With max_duration_s it sets the "
        "decoding budget: at most max_duration_s x max_sample_rate samples (all channels) are ever decoded",
    )
    speech_detector: Literal["voice", "level"] = Field(
        "voice", description="how a clip is judged to hold speech, for the tasks that need a voice (verification "
        "and enrolment: else 422 no_speech), the clips /asr answers with no words without the model, and the "
        "stretches of long recordings it skips: voice = Silero's voice detector (refuses silence, noise, hum, "
        "tones and ring tones; ~2 ms of one core a clip), level = sound above a floor (refuses only "
        "silence; no model in the decoding stage)",
    )
    min_speech_s: float | None = Field(
        None, ge=0, description="seconds of a clip that must be speech, by speech_detector (unset = the gate's "
        "own: 0.1 s of voice, or 0.3 s of sound for the level rule; 0 turns the gate off)",
    )
    speech_floor_dbfs: float | None = Field(
        None, le=0, description="the speech gate's level floor (dBFS): quieter chunks never count as speech "
        "(unset = -55): lower it for quiet microphones",
    )
    # live streams (/asr/stream and the other one-clip tasks' /<endpoint>/stream: docs/API.md, "Live streams")
    max_streams: int = Field(
        16, ge=0, description="live streams open at once; one more is refused (close code 1013; 0 = no streams)"
    )
    stream_max_s: float = Field(3600.0, gt=0, description="most seconds of audio one live stream may send")
    stream_idle_timeout_s: float = Field(
        30.0, gt=0, description="a live stream that sends nothing for this long is closed (close code 1008)"
    )
    stream_max_frame_bytes: int = Field(
        256 * 1024, ge=4096, le=16 * MIB,
        description="largest message of a live stream (also the WebSocket limit uvicorn enforces): 8 s of 16-bit "
        "16 kHz audio",
    )
    stream_end_pause_s: float = Field(
        0.3, ge=0.1, le=5, description="a pause this long (by the voice detector) ends an utterance of a live stream, "
        "unless the stream asks for another (end_pause_s); 0.3 read validation recordings best (docs/server.md)",
    )
    stream_partial_interval_s: float = Field(
        1.0, ge=0, description="how often, at most, the answer of the utterance still being spoken is sent "
        "(tasks with partial answers: /asr; it then waits until the utterance has grown by half; 0 = never)",
    )
    stream_max_utterance_s: float = Field(
        20.0, ge=5, le=30, description="an utterance of a live stream this long is cut at its least voiced moment"
    )
    max_enrol_clips: int = Field(10, ge=1, description="most clips in one enrolment (POST /speakers/{id})")
    max_enrol_seconds: float = Field(120.0, gt=0, description="most seconds of audio in one enrolment, all clips")

    # HTTP and security (docs/server.md#security)
    api_key: SecretStr | None = Field(
        None,
        description="key for admin, enrolment, speaker listing/deletion, /verify against an enrolled speaker and "
        "/identify (X-API-Key or Authorization: Bearer); unset = those routes answer 403",
    )
    insecure_open_admin: bool = Field(
        False, description="development only: with no api_key, open the key's routes to anyone who can connect"
    )
    allow_unauthenticated_bind: bool = Field(
        False, description="start on a non-loopback host without api_key (e.g. behind a proxy that authenticates)"
    )
    verify_rate_per_s: float = Field(
        1.0, gt=0, description="/verify against an enrolled speaker and /identify: sustained attempts per second "
        "per client"
    )
    verify_burst: int = Field(10, ge=1, description="/verify against an enrolled speaker and /identify: burst per "
                              "client")
    header_timeout_s: float = Field(
        10.0, gt=0, description="seconds a connection may take to send a request's headers, else closed (slowloris)"
    )
    max_header_bytes: int = Field(65536, ge=1024, description="largest request head (request line + headers)")
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="idle keep-alive connections are closed after this")
    max_connections: int = Field(
        1000, ge=0, description="open connections + tasks before uvicorn answers 503 (0 = no limit)"
    )
    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8000, ge=0, le=65535, description="bind port")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="log level")
    ui_enabled: bool = Field(
        True, description="serve the try-it page at / (record or upload a clip, see every task's answer); "
        "false for API-only deployments (/ is then 404)"
    )

    @field_validator("api_key", "speakers_url", mode="before")
    @classmethod
    def _empty_key_means_none(cls, value: object) -> object:
        """An empty ELP_API_KEY (common in compose files) means "no key", not "the empty key"."""
        return None if value in ("", None) else value

    @model_validator(mode="after")
    def _rate_range_is_a_range(self) -> Settings:
        if self.min_sample_rate > self.max_sample_rate:
            raise ValueError("min_sample_rate is above max_sample_rate")
        return self

    @field_validator("asr_rescoring", mode="before")
    @classmethod
    def _rescoring_mode(cls, value: object) -> str:
        """Booleans and their spellings as true / false (the ASR task's one reading of the setting)."""
        return normalise_rescoring(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    def default_adapter_ids(self) -> dict[str, str]:
        """Configured default adapter id per config task (``verification``, not ``verify``)."""
        return {spec.name: getattr(self, default_adapter_setting(spec.endpoint)) for spec in REGISTERED_TASKS}

    def resolved_post_pool(self) -> tuple[str, int]:
        """(kind, workers) of the post-processing pool; 0 workers: post-process on the model worker."""
        if self.post_workers:
            return self.post_pool, self.post_workers
        return "processes", self.beam_search_processes

    def resolved_length_ratio(self, device: str) -> float:
        """The configured ratio, or the device's default: on a CPU the encoder is compute-bound and a
        batch costs what its padded rows cost, so only near-equal lengths share a call; on a GPU a call
        costs its operators (one H200 ran 16 rows of 1-10 s through Whisper base in 19 ms, 11 ms of it in
        kernels: benchmarks/model_stage.py), so any mix shares one (0)."""
        if self.batch_length_ratio is not None:
            return self.batch_length_ratio
        return 0.9 if device == "cpu" else 0.0

    def resolved_max_batch_size(self, device: str) -> int:
        """The configured most rows per batch, or the device's default (``0`` = auto): 4 on a CPU (at
        concurrency 64 on 2 cores, 16-row batches served 0.93x the req/s of 4-row ones with a 1.3x p95:
        one worker held 16 rows while the other ran dry; benchmarks/README.md), 64 on a GPU (with any length
        mix: on an H200, 1.38x the req/s of 16-row near-equal-length batches at concurrency 16 on Whisper
        base and 1.47x at 64 on a WavLM Base+ shape; equal within the spread at 64 on Whisper base;
        benchmarks/README.md)."""
        if self.max_batch_size:
            return self.max_batch_size
        return 4 if device == "cpu" else 64

    def resolved_max_batch_audio_s(self, device: str) -> float:
        """The configured padded-audio bound of one batch, or the device's default (``0`` = auto): none on
        a CPU (4 rows); on a GPU 640 s, so the 64-row default cannot pad 64 clips of the longest allowed
        length into one call (the memory of every layer's activations grows with rows x frames)."""
        if self.max_batch_audio_s:
            return self.max_batch_audio_s
        return 0.0 if device == "cpu" else 640.0

    def resolved_model_workers(self, device: str, cores: int) -> int:
        """The configured number of model workers, or the device's default (``0`` = auto): on a CPU two
        workers once there are two cores to run them side by side; on a GPU one."""
        if self.model_workers:
            return self.model_workers
        return min(2, cores) if device == "cpu" else 1

    def resolved_device(self) -> str:
        """``auto`` becomes cuda when torch sees a GPU."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


Settings = create_model(
    "Settings",
    __base__=ServerSettings,
    __doc__="Server configuration; see docs/server.md for the table of env vars. One default adapter id "
    "per registered task (``ELP_DEFAULT_ASR_ADAPTER``, ...).",
    __module__=__name__,
    **{default_adapter_setting(spec.endpoint): (str, Field(spec.default_adapter,
                                                           description=f"adapter id used by {spec.route} by default"))
       for spec in REGISTERED_TASKS},
)
