"""The Ray app's pure parts, without starting Ray: replica deployment options from settings, the
per-replica metric merge, and the adapter-cache budget turned into sets per replica."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.metrics import ServerMetrics
from server.ray_metrics import MetricsBoard, merge_expositions, sample_value

pytest.importorskip("ray.serve")

from server.ray_app import RaySettings, deployment_options, models_per_replica  # noqa: E402


def test_autoscaling_only_when_the_bounds_differ_and_drain_covers_the_deadline() -> None:
    fixed = deployment_options(RaySettings(ray_min_replicas=2, ray_max_replicas=2))
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    scaled = deployment_options(RaySettings(ray_min_replicas=1, ray_max_replicas=4, ray_target_ongoing_requests=6,
                                            ray_replica_gpus=1, request_deadline_s=20, shutdown_drain_s=5))
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"]["max_replicas"] == 4
    assert scaled["autoscaling_config"]["target_ongoing_requests"] == 6
    assert scaled["ray_actor_options"]["num_gpus"] == 1
    assert scaled["graceful_shutdown_timeout_s"] == 25  # queued work may wait a deadline, then drains


def test_models_per_replica_from_the_cache_budget(tiny_store) -> None:
    from server.adapter_store import AdapterStore

    _, store = tiny_store
    largest = max(AdapterStore(store).info(adapter_id).size_bytes for adapter_id in AdapterStore(store).ids())
    assert models_per_replica(RaySettings(adapters_dir=store, ray_models_per_replica=5)) == 5
    # 10 of the largest set, less the 4 pinned defaults
    assert models_per_replica(RaySettings(adapters_dir=store, adapter_cache_bytes=10 * largest)) == 6
    assert models_per_replica(RaySettings(adapters_dir=store, adapter_cache_bytes=largest)) == 1


def test_merged_exposition_labels_each_replica_and_parses() -> None:
    first, second = ServerMetrics(), ServerMetrics()
    first.adapter_loads.inc(3)
    second.adapter_loads.inc(5)
    second.requests.labels("emotion", "200").inc()
    board = MetricsBoard(stale_after_s=60)
    board.report("r1", first.exposition()[0].decode())
    board.report('r"2', second.exposition()[0].decode())  # label values are escaped
    text = board.exposition()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    loads = {s.labels["replica"]: s.value for s in families["elp_adapter_loads"].samples}
    assert loads == {"r1": 3.0, 'r"2': 5.0}
    assert sample_value(text, "elp_requests_total", {"replica": 'r"2', "endpoint": "emotion"}) == 1.0
    assert text.count("# TYPE elp_adapter_loads_total counter") == 1
    assert merge_expositions({}) == "\n"


def test_the_board_forgets_replicas_that_stopped_reporting() -> None:
    board = MetricsBoard(stale_after_s=0.0)
    board.report("gone", ServerMetrics().exposition()[0].decode())
    board._latest["gone"] = (0.0, board._latest["gone"][1])  # reported long ago
    assert board.snapshot() == {}


def test_a_streams_set_is_resolved_once_and_again_only_when_a_replica_finds_it_gone(tiny_store, tmp_path) -> None:
    """RayAnswers (the ingress' side of a live stream) reads the store for the stream's default set once, not at
    every utterance; a replica's adapter_not_found for that default resolves it again and retries once."""
    import asyncio
    import json

    import numpy as np
    from fastapi import Response

    from elp.tasks import get_task
    from server.audio import DecodedAudio
    from server.ray_streams import RayAnswers
    from server.service import InferenceService
    from tests.server.helpers import make_settings

    resolver = InferenceService(make_settings(*tiny_store, tmp_path), ServerMetrics())
    rechecks: list[bool] = []
    resolve = resolver.default_adapter
    resolver.default_adapter = lambda task, recheck=False: rechecks.append(recheck) or resolve(task, recheck)
    replies = []

    async def forward(path, headers, body, adapter_id) -> Response:
        status, reply = replies.pop(0)
        return Response(json.dumps(reply), status_code=status, media_type="application/json")

    answers = RayAnswers(get_task("asr"), resolver, forward)
    clip = DecodedAudio(np.zeros(16000, np.float32), 16000, 16000, 1)
    ok = (200, {"text": "hi", "adapter": "asr-default@x", "duration_s": 1.0,
                "timings_ms": {"queue": 1, "inference": 2}})
    gone = (404, {"error": {"code": "adapter_not_found", "message": "gone"}})

    async def run() -> list:
        label = await answers.label(None)
        replies.extend([ok, ok, gone, ok])
        return [label, *[await answers.answer(clip, None, True) for _ in range(3)]]

    label, *answered = asyncio.run(run())
    assert label.startswith("asr-default@") and rechecks == [False, True]  # once, then once more after the 404
    assert all(a == ({"text": "hi", "adapter": "asr-default@x"}, {"queue": 1, "inference": 2}) for a in answered)
    assert not replies


def test_a_replica_hands_on_each_chunk_as_its_app_sends_it_and_a_client_leaving_stops_the_app() -> None:
    """stream_asgi: the status first, then every chunk before the app makes the next (each waits on the consumer
    here); closing the iterator early is a disconnect the app sees."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from server.ray_forwarding import ForwardedRequest, call_asgi, stream_asgi

    async def scenario() -> None:
        taken = asyncio.Event()
        finished: list[str] = []

        async def events():
            try:
                for index in range(3):
                    yield f"data: {index}\n\n".encode()
                    await asyncio.wait_for(taken.wait(), 5)  # the next only once this one was handed on
                    taken.clear()
                finished.append("all")
            finally:
                finished.append("closed")

        async def endpoint(request):
            return StreamingResponse(events(), media_type="text/event-stream")

        async def plain(request):
            return StreamingResponse(iter([b"data: 0\n\n", b"data: 1\n\n"]), media_type="text/event-stream")

        app = Starlette(routes=[Route("/events", endpoint, methods=["POST"]), Route("/plain", plain, methods=["POST"])])
        request = ForwardedRequest("POST", "/events", b"", [], b"")
        parts = stream_asgi(app, request)
        status, headers = await parts.__anext__()
        assert status == 200 and (b"content-type", b"text/event-stream; charset=utf-8") in headers
        for index in range(2):
            assert await parts.__anext__() == f"data: {index}\n\n".encode()
            taken.set()
        await parts.aclose()  # the client leaves before the last event
        await asyncio.sleep(0.05)
        assert finished == ["closed"]
        whole = await call_asgi(app, ForwardedRequest("POST", "/plain", b"", [], b""))  # plain requests: whole
        assert whole[0] == 200 and whole[2] == b"data: 0\n\ndata: 1\n\n"

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_an_event_stream_whose_replica_is_lost_ends_with_an_error_event_and_is_cancelled() -> None:
    """The ingress' relay: chunks as they come; a replica lost after the first one ends the stream as the single
    server ends a failing one (an ``error`` event the SDKs raise), and the replica's generator is cancelled."""
    import asyncio
    import json

    from ray.serve.exceptions import ReplicaUnavailableError

    from server.ray_forwarding import relayed

    class LostAfterOne:
        def __init__(self) -> None:
            self.sent, self.cancelled = 0, False

        def __aiter__(self):
            return self

        async def __anext__(self) -> bytes:
            self.sent += 1
            if self.sent > 1:
                raise ReplicaUnavailableError("replica-1")
            return b'data: {"type":"transcript.text.delta","delta":"hello"}\n\n'

        def cancel(self) -> None:
            self.cancelled = True

    async def relay() -> tuple[list[bytes], LostAfterOne]:
        parts = LostAfterOne()
        return [chunk async for chunk in relayed(parts)], parts

    chunks, parts = asyncio.run(relay())
    assert len(chunks) == 2 and parts.cancelled
    event = json.loads(chunks[1].removeprefix(b"data: "))
    assert event["type"] == "error" and event["error"]["code"] == "overloaded"


def _request(body: bytes, content_type: str, path: str = "/v1/audio/transcriptions"):
    from starlette.requests import Request

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]}
    return Request(scope, receive)


def _multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "elpboundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    parts.append('--elpboundary\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
                 'Content-Type: audio/wav\r\n\r\nRIFF\r\n')
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(("fields", "stream"), [({"stream": "true", "model": "whisper-1"}, True),
                                                ({"stream": "1"}, True), ({"stream": "false"}, False),
                                                ({"stream": " true"}, False), ({}, False)])
def test_the_ingress_reads_an_upload_once_for_its_stream_flag_as_the_openai_route_does(fields, stream) -> None:
    import asyncio

    from server.ray_app import _form_flag, _upload_form

    async def read():
        request = _request(*_multipart(fields))
        await request.body()  # the ingress reads the body first, to forward it
        form = await _upload_form(request)
        return form, form is not None and _form_flag(form.get("stream"))

    form, flagged = asyncio.run(read())
    assert form is not None and flagged is stream
    assert form.get("model") == fields.get("model")


def test_a_body_that_is_not_a_readable_upload_has_no_form() -> None:
    import asyncio

    from server.ray_app import _upload_form

    assert asyncio.run(_upload_form(_request(b'{"stream": true}', "application/json"))) is None
    assert asyncio.run(_upload_form(_request(b"--x\r\nbroken", "multipart/form-data"))) is None  # no boundary
