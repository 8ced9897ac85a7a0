"""The inference service: backbone, model worker, adapter cache and speakers, wired for one app.

Lives on ``app.state.service``; route handlers only call it. Nothing here imports training code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

from elp.decoding.compiled import warm_up as warm_up_search
from elp.speech_activity import SpeechGate, VoiceGate
from elp.tasks import TASKS
from elp.voice_activity import shared_model
from server.adapter_store import AdapterStore
from server.adapters import AdapterCache, AdapterLease
from server.admission import await_results, results_in_order
from server.audio import AudioLimits, DecodedAudio
from server.batch_policy import BatchPolicy, CostAwarePolicy, LengthRatioPolicy
from server.batching import BatchWorker, InferenceJob, JobResult, overloaded_message
from server.decoding import DecodePool
from server.default_sets import SET_TASKS, DefaultSets
from server.deployment import (
    DEFAULT_TORCH_THREADS,
    DTYPES,
    QUANTIZED,
    deployed_gate,
    deployed_splitter,
    set_torch_threads,
)
from server.errors import AdapterNotFoundError, OverloadedError
from server.memory import IdleTrimmer
from server.metrics import ServerMetrics
from server.post_pool import PostPool, PostStage
from server.rows import RowPlan, plan_rows
from server.settings import Settings
from server.speakers import open_speaker_store

logger = logging.getLogger("server.service")

#: extra seconds a handler waits past the queue deadline for a batch that is already running
RUNNING_GRACE_S = 60.0


@dataclass
class InferenceOutcome:
    predictions: list[Any]
    queue_ms: float
    inference_ms: float


class InferenceService:
    """Everything behind the routes. ``start``/``stop`` are called by the app lifespan."""

    def __init__(self, settings: Settings, metrics: ServerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.limits = AudioLimits(settings.max_duration_s, settings.min_duration_s, settings.min_sample_rate,
                                  settings.max_sample_rate)
        #: tasks that read recordings in segments or windows (``TaskSpec.long_form``); an optional splitter (ASR's
        #: long recordings) only unless the deployment says 0
        long_recordings = settings.max_long_form_s > 0
        self.splitters = {spec.name: deployed_splitter(spec.long_form, settings) for spec in TASKS
                          if spec.long_form is not None and (long_recordings or not spec.long_form.optional)}
        self.long_form_limits = self.limits.for_long_form(settings.max_long_form_s)
        self.store = AdapterStore(settings.adapters_dir)
        self.speakers = open_speaker_store(settings)
        self.decoder: DecodePool | None = None  # started with the backbone (it needs the backbone's rate)
        self.io_pool = ThreadPoolExecutor(4, thread_name_prefix="elp-adapter-io")
        self.post_stage: PostStage | None = None
        self.backbone: Any = None
        self.worker: BatchWorker | None = None
        self.cache: AdapterCache | None = None
        self.sample_rate = 16000
        self.default_sets = DefaultSets(self.store, settings.default_adapter_ids())
        self._warmup: asyncio.Task | None = None
        self._trimming: asyncio.Task | None = None
        self.idle_trimmer: IdleTrimmer | None = None
        self._calibrating = False
        self._compiling = False  # the compiled beam search: ~15 s on a fresh install, then numba's disk cache
        self.speech_gates = {spec.name: deployed_gate(spec.speech_gate, settings) for spec in TASKS}
        #: tasks that answer a clip without sound without the model (``TaskSpec.silence_answer``)
        self.silence_gates = {spec.name: deployed_gate(spec.silence_gate, settings) for spec in TASKS
                              if spec.silence_gate is not None}
        #: deployment defaults a task falls back on (``TaskRequest.fallbacks``): answers and enrolments alike
        self.task_fallbacks = MappingProxyType({"threshold": settings.verify_threshold})  # shared: read-only

    def _gates(self) -> list[SpeechGate]:
        """Every speech gate this deployment runs: the tasks' own, the silence answers', the splitters'."""
        gates = [*self.speech_gates.values(), *self.silence_gates.values(),
                 *(splitter.speech_gate for splitter in self.splitters.values())]
        return [gate for gate in gates if gate is not None]

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the backbone (fail fast if it cannot), start the worker, warm defaults in background."""
        from elp import AdapterSet, MultiAdapterModel, load_backbone

        device = self.settings.resolved_device()
        dtype = DTYPES[self.settings.dtype]
        model_workers = self.settings.resolved_model_workers(device, DEFAULT_TORCH_THREADS)
        max_batch_rows = self.settings.resolved_max_batch_size(device)
        intra_op_threads = set_torch_threads(self.settings.torch_threads, model_workers)
        started = time.perf_counter()
        self.backbone = await asyncio.to_thread(load_backbone, self.settings.backbone, device, dtype,
                                                quantization=QUANTIZED.get(self.settings.dtype))
        self.backbone.front_end_mode = self.settings.front_end
        self.sample_rate = int(getattr(self.backbone, "sample_rate", 16000))
        voice = any(isinstance(gate, VoiceGate) for gate in self._gates())
        if voice:  # the server's own threads run it too (/asr's silence answer, long recordings): load it once now
            await asyncio.to_thread(shared_model)
        self.decoder = DecodePool(self.settings.decode_pool, self.settings.decode_workers, self.sample_rate,
                                  self.limits, on_restart=self.metrics.decoder_restarts.inc, voice_detector=voice)
        logger.info("backbone %s loaded on %s in %.1f s", self.settings.backbone, device,
                    time.perf_counter() - started)
        if device.startswith("cuda"):
            self.metrics.watch_cuda(device)
        # nn.Module starts in training mode: without eval() dropout makes answers random and batch-dependent
        gathered = self.settings.adapter_routing == "gathered"
        model = MultiAdapterModel(self.backbone, gathered_routing=gathered).eval()
        pool_kind, pool_workers = self.settings.resolved_post_pool()
        self.post_stage = PostStage(PostPool(pool_workers, pool_kind) if pool_workers else None)
        self.worker = BatchWorker(
            model,
            stages=self.post_stage,
            max_batch_rows=max_batch_rows,
            max_wait_s=self.settings.max_wait_ms / 1000.0,
            max_queue=self.settings.max_queue,
            metrics=self.metrics,
            workers=model_workers,
            intra_op_threads=intra_op_threads if device == "cpu" else 0,
            wait_only_while_incoming=self.settings.batch_wait == "while-incoming",
            policy=self._batch_policy(device, max_batch_rows),
        )
        self.worker.start()
        # not ready until the batch cost model has been timed (the defaults load first: it needs a set)
        self._calibrating = isinstance(self.worker.policy, CostAwarePolicy) and self.settings.batch_calibration_s > 0
        self.cache = AdapterCache(
            self.store,
            parse_adapter_set=lambda config, weights: self._prepared(
                AdapterSet.from_bytes(config, weights, device=device, share_decoder=True)),
            run_on_model=self.worker.call,
            budget_bytes=self.settings.adapter_cache_bytes,
            executor=self.io_pool,
            metrics=self.metrics,
        )
        self.default_sets.resolve()
        self._compiling = True
        self._warmup = asyncio.create_task(self._load_defaults(), name="elp-load-default-adapters")
        if self.settings.idle_trim_s > 0:
            self.idle_trimmer = IdleTrimmer(self.worker, self.settings.idle_trim_s, on_trim=self.metrics.heap_trims.inc)
            self._trimming = asyncio.create_task(self._trim_when_idle(), name="elp-idle-trim")

    async def _trim_when_idle(self) -> None:
        """Give the heap's freed memory back once the model has been idle a while (``server.memory``)."""
        trimmer, loop = self.idle_trimmer, asyncio.get_running_loop()
        assert trimmer is not None
        while True:
            await asyncio.sleep(trimmer.idle_s / 2)
            if trimmer.due():
                await loop.run_in_executor(self.io_pool, trimmer.trim_if_due)

    def _prepared(self, adapter_set: Any) -> Any:
        """A loaded set as this deployment serves it (its task may apply settings: the ASR beam width)."""
        options = {"asr_beam_width": self.settings.asr_beam_width, "asr_rescoring": self.settings.asr_rescoring,
                   "backbone_source": self.backbone.source if self.backbone is not None else None,
                   **(self.backbone.serving_options() if self.backbone is not None else {})}
        return adapter_set.task_spec.prepare_for_serving(adapter_set, options)

    async def stop(self) -> None:
        for task in (self._warmup, self._trimming):
            if task is not None and not task.done():
                task.cancel()
        if self.worker is not None:
            await asyncio.to_thread(self.worker.stop, self.settings.shutdown_drain_s)
        if self.post_stage is not None:  # after the drain: its last rows finish post-processing
            await asyncio.to_thread(self.post_stage.shutdown)
        if self.decoder is not None:
            self.decoder.shutdown()
        self.io_pool.shutdown(wait=False, cancel_futures=True)

    async def warmed(self) -> None:
        """Returns once the default sets have been tried (loaded or reported): a scaled-out replica
        joins the routing only then."""
        if self._warmup is not None:
            await asyncio.shield(self._warmup)

    async def _load_defaults(self) -> None:
        assert self.cache is not None
        await self.default_sets.load(self.cache)
        try:  # compiled beam search: 0.1 s from numba's cache; a first compile ~15 s, which a first /asr would wait for
            await asyncio.to_thread(warm_up_search)
        finally:
            self._compiling = False
        await self._calibrate_batch_cost()
        self.metrics.ready.set(1 if self.readiness()[0] else 0)

    async def _calibrate_batch_cost(self) -> None:
        """Time a few batches of a loaded default set's model stage (head outputs; post-processing such
        as beam search is not the batch's cost) for the cost-aware batch policy, on the worker thread,
        before the server reports ready."""
        assert self.worker is not None and self.cache is not None
        policy, budget_s = self.worker.policy, self.settings.batch_calibration_s
        residents = [self.cache.resident(adapter_id) for adapter_id in self.default_sets.at_start().values()]
        keys = [resident.model_key for resident in residents if resident is not None]
        if not isinstance(policy, CostAwarePolicy) or not budget_s or not keys:
            self._calibrating = False
            return
        try:
            await asyncio.wrap_future(
                self.worker.call(lambda model: policy.calibrate(model.head_outputs, keys[0], budget_s)))
        except Exception:  # the policy keeps its prior and learns from served batches
            logger.exception("timing batches for the batch cost model failed")
        finally:
            self._calibrating = False

    # -- defaults & readiness --------------------------------------------------------------------
    def default_adapter(self, task: str, recheck: bool = False) -> str:
        """The task's default set id (``DefaultSets.adapter_for``)."""
        return self.default_sets.adapter_for(task, recheck)

    def readiness(self) -> tuple[bool, list[str]]:
        problems: list[str] = []
        if self.backbone is None or self.worker is None or not self.worker.alive:
            problems.append("backbone or model worker not running")
        if self._calibrating:
            problems.append("timing batches for the batch cost model")
        if self._compiling:
            problems.append("compiling the beam search (numba; once per install, then cached)")
        if self.decoder is not None and self.decoder.warming:
            problems.append("decoding processes starting")
        if self.cache is not None:
            problems += self.default_sets.unready(self.cache)
        ready = not problems
        self.metrics.ready.set(1 if ready else 0)
        return ready, problems

    @property
    def defaults(self) -> dict[str, str | None]:
        return self.default_sets.ids

    # -- request path ------------------------------------------------------------------------------
    async def decode(self, data: bytes, field: str = "file", task: str | None = None) -> DecodedAudio:
        """The upload as model input, within ``task``'s limits (longer for a task that takes long
        recordings), through its speech gate (a clip without a voice: ``NoSpeechError``)."""
        assert self.decoder is not None
        limits = self.long_form_limits if task in self.splitters else self.limits
        return await self.decoder.decode(data, field, self.speech_gates.get(task or ""), limits)

    async def plan(self, task: str, clips: list[DecodedAudio]) -> RowPlan:
        """The request's rows: see :func:`server.rows.plan_rows` (with this deployment's splitter and gate)."""
        return await plan_rows(clips, self.splitters.get(task), self.silence_gates.get(task))

    def _batch_policy(self, device: str, max_batch_rows: int) -> BatchPolicy:
        """The configured batch policy with the device's row and padded-audio bounds."""
        max_padded_s = self.settings.resolved_max_batch_audio_s(device)
        if self.settings.batch_policy == "cost":
            return CostAwarePolicy(max_batch_rows, self.settings.batch_latency_bound_ms / 1000.0, self.sample_rate,
                                   max_padded_s=max_padded_s)
        return LengthRatioPolicy(max_batch_rows, self.settings.resolved_length_ratio(device),
                                 max_padded=int(max_padded_s * self.sample_rate))

    async def lease(self, task: str, adapter_id: str | None) -> AdapterLease:
        """Lease the named set, or the task's default. The default is not looked up on disk for every
        request (the lease checks the files anyway): only when the lease finds it gone are the
        defaults resolved again, and the new one leased."""
        assert self.cache is not None
        if adapter_id is not None:
            return await self.cache.acquire(adapter_id, SET_TASKS[task])
        default_id = self.default_adapter(task)
        try:
            return await self.cache.acquire(default_id, SET_TASKS[task])
        except AdapterNotFoundError:
            fallback = self.default_adapter(task, recheck=True)
            if fallback == default_id:
                raise
            return await self.cache.acquire(fallback, SET_TASKS[task])

    def incoming(self) -> contextlib.AbstractContextManager[None]:
        """Around a request's decoding: tells the worker that company for its batch is on the way."""
        return self.worker.incoming() if self.worker is not None else contextlib.nullcontext()

    def admit(self, rows: int = 1) -> None:
        """At the door, before the upload is decoded: 503 with Retry-After (the estimated wait) when
        the work already queued would keep this request waiting past its deadline."""
        if self.worker is None:
            return
        deadline_s = self.settings.request_deadline_s
        wait = self.worker.estimated_wait_s(rows)
        if wait > deadline_s and self.worker.queue_depth:
            raise OverloadedError(overloaded_message(wait, deadline_s), retry_after_s=wait)

    def _job(self, task: str, lease: AdapterLease, clips: list[DecodedAudio]) -> InferenceJob:
        return InferenceJob(task=task, waveforms=[torch.from_numpy(clip.waveform) for clip in clips],
                            adapter_keys=[lease.entry.model_key] * len(clips),
                            deadline=time.monotonic() + self.settings.request_deadline_s)

    def _submit(self, jobs: list[InferenceJob]) -> list[Future]:
        """Queue every job, or none: when the queue refuses one, the ones queued before it are withdrawn."""
        assert self.worker is not None
        futures: list[Future] = []
        try:
            for job in jobs:
                futures.append(self.worker.submit(job, max_wait_s=self.settings.request_deadline_s))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return futures

    async def _results(self, futures: list[Future], receive: Any) -> list[JobResult]:
        return await await_results(futures, receive=receive, deadline_s=self.settings.request_deadline_s,
                                   grace_s=RUNNING_GRACE_S, metrics=self.metrics)

    async def infer(self, task: str, lease: AdapterLease, clips: list[DecodedAudio], *,
                    receive: Any = None) -> InferenceOutcome:
        """Queue the clips as one job and wait for the batch that runs them (``receive``: see :meth:`_results`)."""
        [result] = await self._results(self._submit([self._job(task, lease, clips)]), receive)
        return InferenceOutcome(result.predictions, result.queue_wait_s * 1000.0, result.inference_s * 1000.0)

    async def infer_plan(self, task: str, lease: AdapterLease, plan: RowPlan, *,
                         receive: Any = None) -> InferenceOutcome:
        """Run a request's rows as :meth:`plan` laid them out: whole clips as one job, segments a job each
        (admitted now that their number is known), no rows at all for a silent clip."""
        if plan.silent:
            return InferenceOutcome([], 0.0, 0.0)
        if plan.spans is None:
            return await self.infer(task, lease, plan.rows, receive=receive)
        self.admit(max(1, len(plan.rows)))
        return await self.infer_segments(task, lease, plan.rows, receive=receive)

    async def infer_segments(self, task: str, lease: AdapterLease, segments: list[DecodedAudio], *,
                             receive: Any = None) -> InferenceOutcome:
        """A long recording's segments, one job each, queued together: they share batches with each other
        and with other requests instead of making one batch of padded minutes. The jobs are queued at one
        moment, so ``queue_ms`` is the wait until the first segment's batch started and ``inference_ms`` the
        time from then until the last segment's batch was done (batches overlap: summing them would not)."""
        if not segments:  # a silent recording: nothing to run
            return InferenceOutcome([], 0.0, 0.0)
        results = await self._results(self._submit([self._job(task, lease, [segment]) for segment in segments]),
                                      receive)
        first = min(result.queue_wait_s for result in results)
        last = max(result.queue_wait_s + result.inference_s for result in results)
        return InferenceOutcome([result.predictions[0] for result in results], first * 1000.0, (last - first) * 1000.0)

    async def iter_plan(self, task: str, lease: AdapterLease, plan: RowPlan) -> AsyncIterator[list[Any]]:
        """The predictions of a plan's jobs in order, each job's as soon as it is done (streamed answers): a long
        recording's segments queued together, one job each, as :meth:`infer_plan` queues them; whole clips as
        one job; nothing for a silent clip."""
        if plan.silent or not plan.rows:
            return
        if plan.spans is None:
            jobs = [self._job(task, lease, plan.rows)]
        else:
            self.admit(len(plan.rows))
            jobs = [self._job(task, lease, [segment]) for segment in plan.rows]
        async for result in results_in_order(self._submit(jobs), deadline_s=self.settings.request_deadline_s,
                                             grace_s=RUNNING_GRACE_S):
            yield result.predictions

    async def infer_each(self, task: str, lease: AdapterLease, clips: list[DecodedAudio], *,
                         receive: Any = None) -> InferenceOutcome:
        """One job per clip, one after another: a long job (an enrolment) becomes ordinary batches that
        other requests interleave with, instead of one batch that holds the worker."""
        outcomes = [await self.infer(task, lease, [clip], receive=receive) for clip in clips]
        return InferenceOutcome([o.predictions[0] for o in outcomes], sum(o.queue_ms for o in outcomes),
                                sum(o.inference_ms for o in outcomes))

    async def list_adapters(self) -> list[dict[str, Any]]:
        """Listing rows for ``GET /adapters`` (hashing happens off the event loop)."""
        defaults = set(filter(None, self.default_sets.resolve().values()))
        loop = asyncio.get_running_loop()

        def collect() -> list[Any]:
            rows = []
            for adapter_id in self.store.ids():
                try:
                    rows.append(self.store.info(adapter_id))
                except AdapterNotFoundError:
                    continue  # deleted while listing
            return rows

        infos = await loop.run_in_executor(self.io_pool, collect)
        rows = []
        for info in infos:
            entry = self.cache.resident(info.id) if self.cache else None
            rows.append(info.model_copy(update={
                "resident": entry is not None and entry.sha256 == info.sha256, "default": info.id in defaults,
            }).model_dump())
        return rows
