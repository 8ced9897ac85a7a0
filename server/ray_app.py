"""The server scaled out on Ray Serve: replicas with adapter-affinity routing, the same HTTP contract.

``serve run server.ray_app:build_app`` (or ``deploy/ray/serve_config.yaml``). Three deployments:

* ``ElpReplica`` (N, autoscaled): each runs the single server's whole app in-process (``create_app``:
  backbone, batching worker, adapter cache, the project's router, errors and middleware). The
  adapter set id is Ray's *multiplexed model id*: ``resident_set`` is ``@serve.multiplexed`` with
  ``max_num_models_per_replica`` from the adapter cache budget, so Ray's router sends a request to a
  replica that already holds its set and loads it elsewhere only when it must; when Ray's LRU drops a
  set, the replica unloads it too (pinned defaults stay on every replica).
* ``ElpIngress`` (HTTP): resolves the request's adapter id (the ``adapter`` form field, else the task's
  default, read from the same store) and forwards the request's bytes to a replica through the handle
  with that multiplexed id. Answers, error bodies and status codes are the replica app's own, so a
  client cannot tell this from the single server. A replica that dies mid-request: the request is
  retried on another, else refused with 503 ``overloaded``.
* ``ElpMetricsBoard``: replicas' Prometheus texts, merged with a ``replica`` label (server.ray_metrics).

Ray is optional (``pip install -e ".[ray]"``); ``elp-server`` stays the default. Settings: every
``ELP_*`` of the single server plus the ``ELP_RAY_*`` ones below; the serve config's ``args`` override.
"""

# no ``from __future__ import annotations``: Ray's ingress wraps the route methods, and FastAPI must see
# ``request: Request`` as a class, not a string, to inject the request

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import Field, TypeAdapter, ValidationError
from ray import serve
from ray.serve.exceptions import BackPressureError

from elp.tasks import TASKS, enrolment_task
from server.errors import error_response, install_error_handlers
from server.openai_audio import OPENAI_TASK_OF_PATH, adapter_for_model
from server.ray_forwarding import REPLICA_GONE, ForwardedRequest, ForwardedResponse, call_asgi, relayed, stream_asgi
from server.ray_metrics import MetricsBoard
from server.ray_streams import RayAnswers
from server.settings import Settings
from server.streaming import CLOSE_POLICY, serve_stream

logger = logging.getLogger("server.ray")

#: ingress path -> config task whose default adapter a request without ``adapter`` uses
_TASK_OF_PATH = {spec.route: spec.name for spec in TASKS}
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class RaySettings(Settings):
    """The single server's settings plus the scale-out knobs (env ``ELP_RAY_*``)."""

    ray_min_replicas: int = Field(1, ge=0, description="fewest replicas (autoscaling lower bound)")
    ray_max_replicas: int = Field(1, ge=1, description="most replicas; above ray_min_replicas = autoscaling")
    ray_target_ongoing_requests: float = Field(
        8.0, gt=0, description="autoscaling target: requests in flight per replica (queue depth)"
    )
    ray_max_ongoing_requests: int = Field(
        64, ge=1, description="requests one replica takes at once (its batching worker forms batches from them)"
    )
    ray_max_queued_requests: int = Field(
        256, ge=-1, description="requests waiting for a replica before 503 overloaded (-1 = no limit)"
    )
    ray_replica_cpus: float = Field(1.0, gt=0, description="CPUs reserved per replica")
    ray_replica_gpus: float = Field(0.0, ge=0, description="GPUs per replica (1 = one replica per GPU)")
    ray_ingress_cpus: float = Field(0.25, ge=0, description="CPUs reserved per ingress replica")
    ray_ingress_replicas: int = Field(
        1, ge=1, description="ingress replicas (each parses and forwards requests; add more when one tops out)"
    )
    ray_models_per_replica: int = Field(
        0, ge=0, description="adapter sets one replica keeps for routing (0 = adapter_cache_bytes / the "
        "largest set in the store, less the pinned defaults)",
    )
    ray_health_check_period_s: float = Field(10.0, gt=0, description="seconds between replica health checks")
    ray_metrics_push_s: float = Field(2.0, gt=0, description="seconds between replica metric reports")
    ray_forward_attempts: int = Field(2, ge=1, description="replicas a request tries before 503")


def models_per_replica(settings: RaySettings) -> int:
    """How many sets Ray may route to one replica: the configured count, or as many of the store's
    largest set as the cache budget holds beside the pinned defaults (at least 1)."""
    if settings.ray_models_per_replica:
        return settings.ray_models_per_replica
    from server.adapter_store import AdapterStore
    from server.default_sets import DefaultSets

    store = AdapterStore(settings.adapters_dir)
    sizes = []
    for adapter_id in store.ids():
        with contextlib.suppress(Exception):
            sizes.append(store.info(adapter_id).size_bytes)
    if not sizes:
        return 1
    resolved = DefaultSets(store, settings.default_adapter_ids()).resolve()
    defaults = len({adapter_id for adapter_id in resolved.values() if adapter_id is not None})
    return max(1, settings.adapter_cache_bytes // max(sizes) - defaults)


class ReplicaBody:
    """One replica: the single server's app with its lifespan running (``make_replica_class`` adds the
    multiplexed loader, whose per-replica limit is only known at build time)."""

    async def __init__(self, settings: dict[str, Any], board: Any) -> None:
        from server.app import create_app

        self.settings = RaySettings(**settings)
        self.board = board
        self.app = create_app(self.settings)
        self.service = self.app.state.service
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        await self.service.warmed()  # join Ray's routing with the defaults resident
        for adapter_id in filter(None, self.service.defaults.values()):
            self.service.cache.pinned.add(adapter_id)
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        self._stopping = False
        self._report_now = asyncio.Event()
        self._reporter = asyncio.create_task(self._report_metrics_forever(), name="elp-ray-metrics")
        logger.info("replica %s ready: defaults %s", self.replica_id, self.service.defaults)

    async def forward(self, request: ForwardedRequest) -> ForwardedResponse:
        """Answer one forwarded request; its multiplexed id (the adapter set) is made resident first
        so that Ray's routing table and this replica's cache agree."""
        await self._make_resident()
        status, headers, body = await call_asgi(self.app, request)
        return ForwardedResponse(status, headers, body, self.replica_id)

    async def forward_stream(self, request: ForwardedRequest) -> AsyncIterator[tuple[int, list] | bytes]:
        """:meth:`forward` for an answer sent as it is made (OpenAI's ``stream=true`` events): ``(status,
        headers)``, then the body's chunks, through a streaming handle (``handle.options(stream=True)``)."""
        await self._make_resident()
        async for part in stream_asgi(self.app, request):
            yield part

    async def _make_resident(self) -> None:
        adapter_id = serve.get_multiplexed_model_id()
        if adapter_id:
            # unknown or broken ids: the app answers with the contract's own error
            with contextlib.suppress(Exception):
                await self.resident_set(adapter_id)  # type: ignore[attr-defined]

    async def _load_set(self, adapter_id: str) -> "_ResidentSet":
        lease = await self.service.cache.acquire(adapter_id)
        lease.release()
        self._report_now.set()
        return _ResidentSet(self, adapter_id)

    async def check_health(self) -> None:
        """Ray's health check: the service's readiness; fatal only when the model worker is gone (a
        restart fixes that; a broken default set it would not)."""
        ready, problems = self.service.readiness()
        worker = self.service.worker
        if worker is None or not worker.alive:
            raise RuntimeError("; ".join(problems) or "model worker not running")

    async def _report_metrics_forever(self) -> None:
        while not self._stopping:
            with contextlib.suppress(Exception):  # the board may be restarting; next round
                text = self.service.metrics.exposition()[0].decode()
                await self.board.report.remote(self.replica_id, text)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._report_now.wait(), self.settings.ray_metrics_push_s)
            self._report_now.clear()

    async def __del__(self) -> None:
        """Graceful shutdown: Ray stopped routing here and waited for ongoing requests; the lifespan
        then drains the batching queue (``shutdown_drain_s``)."""
        self._stopping = True
        self._reporter.cancel()
        await self._lifespan.__aexit__(None, None, None)


class _ResidentSet:
    """What Ray's multiplexer holds per set; Ray awaits its ``__del__`` when its LRU drops the set."""

    def __init__(self, replica: "ReplicaBody", adapter_id: str) -> None:
        self.replica = replica
        self.adapter_id = adapter_id
        self.__del__ = self._drop  # an instance attribute: Python's own finaliser never calls it

    async def _drop(self) -> None:
        cache = self.replica.service.cache
        if self.replica._stopping or self.adapter_id in cache.pinned:
            return
        with contextlib.suppress(Exception):  # deleted from the store meanwhile: nothing to unload
            await cache.unload(self.adapter_id)
        self.replica._report_now.set()


def make_replica_class(max_models: int) -> type:
    class ElpReplica(ReplicaBody):
        @serve.multiplexed(max_num_models_per_replica=max_models)
        async def resident_set(self, adapter_id: str) -> _ResidentSet:
            return await self._load_set(adapter_id)

    return ElpReplica


async def _awaited(response: Any) -> Any:
    """A Ray DeploymentResponse as a coroutine, for asyncio.wait_for (defined before the ingress class:
    ``serve.ingress`` captures the route functions and what they reference when the class is made)."""
    return await response


ingress_api = FastAPI(title="ELP speech server (Ray Serve ingress)", openapi_url=None, docs_url=None, redoc_url=None)
install_error_handlers(ingress_api)


_AS_BOOL = TypeAdapter(bool)  # built once: the ingress reads a flag on every OpenAI upload


def _form_flag(value: object) -> bool:
    """A form field read as the OpenAI route reads its ``bool`` ``stream`` (pydantic's rule, so the two never
    disagree); a value it refuses is not a stream (the replica answers 422)."""
    try:
        return _AS_BOOL.validate_python(value)
    except ValidationError:
        return False


async def _upload_form(request: Request) -> Any | None:
    """A multipart upload's fields, parsed once for both the adapter and the stream flag (Starlette keeps the parse);
    None for other bodies, and for a malformed one, whose errors the replica's app reports."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return None
    try:
        form = await request.form()
        await form.close()
    except Exception:
        return None
    return form


def _end_to_end(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """A replica's answer headers without the hop-by-hop ones (the ingress' own connection sets those). Defined
    above the ingress: defined below it, the deployed ingress did not find it (NameError in its replica)."""
    decoded = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers)
    return {k: v for k, v in decoded if k.lower() not in _HOP_BY_HOP}


@serve.deployment(name="ElpIngress")
@serve.ingress(ingress_api)
class ElpIngress:
    """Every path, every method: resolve the adapter id, forward to a replica, answer as it did."""

    def __init__(self, replicas: Any, board: Any, settings: dict[str, Any]) -> None:
        from server.metrics import ServerMetrics
        from server.service import InferenceService

        self.settings = RaySettings(**settings)
        self.replicas = replicas
        self.board = board
        # never started: only its store and default resolution are used, the same code as a replica's (and its
        # metrics object counts this ingress' live streams)
        self.resolver = InferenceService(self.settings, ServerMetrics())
        self.open_streams: dict[str, int] = {}
        self._stream_reports: asyncio.Task | None = None

    @ingress_api.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                           include_in_schema=False)
    async def route(self, request: Request) -> Response:
        if request.method == "GET" and request.url.path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST

            return Response(await self.board.exposition.remote(), media_type=CONTENT_TYPE_LATEST)
        body = await request.body()
        form = await _upload_form(request)
        adapter_id = self.adapter_for(request, form)
        headers = [(k, v) for k, v in request.scope["headers"] if k.decode("latin-1").lower() not in _HOP_BY_HOP]
        headers.append((b"content-length", str(len(body)).encode()))
        client = (request.client.host, request.client.port) if request.client else None
        forwarded = ForwardedRequest(request.method, request.url.path, request.scope.get("query_string", b""),
                                     headers, body, client)
        spec = OPENAI_TASK_OF_PATH.get(request.url.path)  # a route that streams, asked to (translations do not)
        events = bool(spec and spec.openai_audio.streams and form is not None and _form_flag(form.get("stream")))
        return await self.forward(forwarded, adapter_id, events=events)

    @ingress_api.websocket("/{endpoint}/stream")
    async def stream(self, websocket: WebSocket, endpoint: str) -> None:
        """A live stream (server.ray_streams): the session here, each utterance answered by a replica."""
        spec = next((spec for spec in TASKS if spec.endpoint == endpoint and spec.streams), None)
        if spec is None:
            await websocket.close(CLOSE_POLICY)
            return
        if self._stream_reports is None:  # from the first stream on, its series reach the board like a replica's
            self._stream_reports = asyncio.create_task(self._report_streams_forever(), name="elp-ray-stream-metrics")
        answers = RayAnswers(spec, self.resolver, self._forward_post)
        await serve_stream(websocket, spec, self.settings, self.resolver.metrics, answers, self.open_streams)

    async def _report_streams_forever(self) -> None:
        """This ingress' live-stream series (only those: it runs no model) to the metrics board, under
        ``replica="ingress-<id>"``, every ``ray_metrics_push_s``."""
        ingress_id = f"ingress-{serve.get_replica_context().replica_id.unique_id}"
        while True:
            with contextlib.suppress(Exception):  # the board may be restarting; next round
                await self.board.report.remote(ingress_id, self.resolver.metrics.stream_exposition().decode())
            await asyncio.sleep(self.settings.ray_metrics_push_s)

    async def _forward_post(self, path: str, headers: list[tuple[bytes, bytes]], body: bytes,
                            adapter_id: str) -> Response:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        return await self.forward(ForwardedRequest("POST", path, b"", headers, body, None), adapter_id)

    def adapter_for(self, request: Request, form: Any | None) -> str | None:
        """The set a request will use (its multiplexed id), or None when it uses none or names one
        that does not exist (the replica then answers the contract's error). ``form``: its upload's fields."""
        path, method = request.url.path, request.method
        if method == "POST" and path.startswith("/adapters/") and path.endswith("/load"):
            named = path[len("/adapters/"):-len("/load")]
            return named if self._exists(named) else None
        enrolment = enrolment_task()
        openai_spec = OPENAI_TASK_OF_PATH.get(path)
        task = _TASK_OF_PATH.get(path) or (enrolment.name if enrolment is not None and method == "POST"
                                           and path.startswith("/speakers/") else None)
        task = openai_spec.name if openai_spec is not None else task
        if task is None:
            return None
        if form is not None:
            named = form.get("adapter") if openai_spec is None else form.get("model")
            if openai_spec is not None and isinstance(named, str):  # OpenAI's own model names: the default
                named = adapter_for_model(openai_spec, named)
            if isinstance(named, str) and named:
                return named if self._exists(named) else None
        try:
            default_id = self.resolver.default_adapter(task)
            return default_id if self._exists(default_id) else self.resolver.default_adapter(task, recheck=True)
        except Exception:  # no default installed: the replica answers 404 adapter_not_found
            return None

    def _exists(self, adapter_id: str) -> bool:
        try:
            return self.resolver.store.exists(adapter_id)
        except Exception:  # an invalid id
            return False

    async def forward(self, request: ForwardedRequest, adapter_id: str | None, events: bool = False) -> Response:
        """Send ``request`` to a replica holding ``adapter_id`` and answer as it did. With ``events`` (an event
        stream) through a streaming handle: the replica's status and headers, then each chunk as it sends it; one
        lost after its first chunk ends the stream with an ``error`` event, as the single server ends a stream that
        fails. A replica lost before it answered is retried on another."""
        handle = self.replicas.options(multiplexed_model_id=adapter_id) if adapter_id else self.replicas
        handle = handle.options(stream=True) if events else handle
        timeout_s = self.settings.request_deadline_s + 90.0
        for attempt in range(1, self.settings.ray_forward_attempts + 1):
            call = handle.forward_stream.remote(request) if events else handle.forward.remote(request)
            try:
                first = await asyncio.wait_for(call.__anext__() if events else _awaited(call), timeout_s)
            except asyncio.TimeoutError:
                call.cancel()
                return error_response(504, "timeout", f"no answer from a replica within {timeout_s:.0f} s")
            except BackPressureError:
                return error_response(503, "overloaded", "every replica is busy; retry shortly",
                                      {"Retry-After": "1"})
            except (*REPLICA_GONE, StopAsyncIteration) as exc:
                logger.warning("replica gone during %s %s (attempt %d): %s", request.method, request.path,
                               attempt, type(exc).__name__)
                continue
            if events:
                status, headers = first
                return StreamingResponse(relayed(call), status_code=status, headers=_end_to_end(headers))
            answer: ForwardedResponse = first
            return Response(answer.body, status_code=answer.status, headers=_end_to_end(answer.headers))
        return error_response(503, "overloaded", "the replica serving this request went away; retry",
                              {"Retry-After": "1"})


def deployment_options(settings: RaySettings) -> dict[str, Any]:
    """Replica deployment options: resources, autoscaling on ongoing requests, graceful drain, health."""
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": settings.ray_replica_cpus, "num_gpus": settings.ray_replica_gpus},
        "max_ongoing_requests": settings.ray_max_ongoing_requests,
        "max_queued_requests": settings.ray_max_queued_requests,
        # scale-down: stop routing, wait for ongoing requests, then __del__ drains the batching queue
        "graceful_shutdown_wait_loop_s": 1.0,
        "graceful_shutdown_timeout_s": settings.shutdown_drain_s + settings.request_deadline_s,
        "health_check_period_s": settings.ray_health_check_period_s,
        "health_check_timeout_s": max(30.0, settings.ray_health_check_period_s),
    }
    if settings.ray_max_replicas > settings.ray_min_replicas:
        options["autoscaling_config"] = {
            "min_replicas": settings.ray_min_replicas, "max_replicas": settings.ray_max_replicas,
            "initial_replicas": max(1, settings.ray_min_replicas),
            "target_ongoing_requests": settings.ray_target_ongoing_requests,
            "upscale_delay_s": 10.0, "downscale_delay_s": 120.0,
        }
    else:
        options["num_replicas"] = max(1, settings.ray_min_replicas)
    return options


def build_app(args: dict[str, Any] | None = None) -> Any:
    """The Ray Serve application (``serve run server.ray_app:build_app``; ``args`` override ``ELP_*``)."""
    settings = RaySettings(**(args or {}))
    # resolved here, once: replicas on other nodes need not share this process's environment
    values = {name: getattr(settings, name) for name in RaySettings.model_fields}
    board = serve.deployment(MetricsBoard, name="ElpMetricsBoard", num_replicas=1, max_ongoing_requests=1000,
                             ray_actor_options={"num_cpus": 0}).bind(5 * settings.ray_metrics_push_s)
    replica_class = make_replica_class(models_per_replica(settings))
    replicas = serve.deployment(replica_class, name="ElpReplica", **deployment_options(settings)).bind(values, board)
    ingress = ElpIngress.options(num_replicas=settings.ray_ingress_replicas, max_ongoing_requests=1000,
                                 ray_actor_options={"num_cpus": settings.ray_ingress_cpus})
    return ingress.bind(replicas, board, values)
