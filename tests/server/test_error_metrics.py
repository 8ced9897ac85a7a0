"""elp_errors_total counts error answers by their ``error.code``: the server's own codes as they are, any
other code as ``other`` (bounded labels), and no count for a status answer that is no error body."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.errors import error_response
from server.metrics import ServerMetrics
from server.middleware import RequestMetricsMiddleware

pytestmark = pytest.mark.anyio


async def no_speech(request):
    return error_response(422, "no_speech", "'file' is silent")


async def odd_code(request):
    return JSONResponse({"error": {"code": json.dumps({"made": "up"}), "message": "?"}}, status_code=400)


async def starting(request):
    return JSONResponse({"ready": False, "problems": ["loading"]}, status_code=503)


async def test_error_answers_are_counted_by_code_and_status_answers_are_not() -> None:
    metrics = ServerMetrics()
    routes = [Route("/verify", no_speech, methods=["POST"], name="verify"), Route("/odd", odd_code, name="odd"),
              Route("/readyz", starting, name="readyz")]
    app = RequestMetricsMiddleware(Starlette(routes=routes), metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.post("/verify")).status_code == 422
        assert (await client.get("/odd")).status_code == 400
        assert (await client.get("/readyz")).status_code == 503

    def count(endpoint: str, error: str) -> float:
        return metrics.registry.get_sample_value("elp_errors_total", {"endpoint": endpoint, "error": error}) or 0.0

    assert count("verify", "no_speech") == 1 and count("odd", "other") == 1
    assert not [s for f in metrics.registry.collect() if f.name == "elp_errors" for s in f.samples
                if s.labels["endpoint"] == "readyz"]
    assert metrics.registry.get_sample_value("elp_requests_total", {"endpoint": "readyz", "code": "503"}) == 1
