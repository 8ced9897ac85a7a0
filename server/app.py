"""App factory: ``create_app(settings)`` wires settings, metrics, errors, routes and the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from server.errors import install_error_handlers
from server.metrics import ServerMetrics
from server.middleware import BodyLimitMiddleware, RequestMetricsMiddleware, UploadTimeoutMiddleware
from server.openai_audio import router as openai_router
from server.routes import router
from server.security import TokenBucketLimiter
from server.service import InferenceService
from server.settings import Settings
from server.streaming import stream_router
from server.ui import router as ui_router

logger = logging.getLogger("server")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Nothing heavy happens here: the lifespan loads the backbone and starts the worker."""
    settings = settings or Settings()
    metrics = ServerMetrics()
    service = InferenceService(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            logger.info("shutting down: draining the request queue for up to %.0f s", settings.shutdown_drain_s)
            await service.stop()

    # The routes are the app's own, not an included router: FastAPI (0.16x) re-walks an included
    # router's routes on every request to see whether they changed, ~6% of a saturated event loop
    # (py-spy, benchmarks/README.md "Host time per request"); ours are fixed when the app is built.
    routes = [*router.routes, *openai_router.routes, *stream_router.routes,
              *(ui_router.routes if settings.ui_enabled else [])]
    app = FastAPI(
        title="ELP speech server",
        version="1.0.0",
        summary="One frozen speech encoder, ELP adapter sets for ASR, speaker verification, emotion and intent.",
        lifespan=lifespan,
        routes=routes,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = service
    app.state.open_streams = {}  # live streams open now, by endpoint (read and written on the event loop)
    app.state.verify_limiter = TokenBucketLimiter(settings.verify_rate_per_s, settings.verify_burst)
    install_error_handlers(app)
    # added innermost first: metrics see every answer, including the body limit's 413s and the upload
    # timeout's 408s; the timeout wraps the receive() that the body limit reads from
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(UploadTimeoutMiddleware, timeout_s=settings.upload_timeout_s)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app
