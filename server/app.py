"""App factory: ``create_app(settings)`` wires settings, metrics, errors, routes and the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from server.errors import install_error_handlers
from server.metrics import ServerMetrics
from server.middleware import BodyLimitMiddleware, RequestMetricsMiddleware, UploadTimeoutMiddleware
from server.routes import router
from server.service import InferenceService
from server.settings import Settings
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

    app = FastAPI(
        title="ELP speech server",
        version="1.0.0",
        summary="One frozen speech encoder, ELP adapter sets for ASR, speaker verification, emotion and intent.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = service
    install_error_handlers(app)
    app.include_router(router)
    if settings.ui_enabled:
        app.include_router(ui_router)
    # added innermost first: metrics see every answer, including the body limit's 413s and the upload
    # timeout's 408s; the timeout wraps the receive() that the body limit reads from
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(UploadTimeoutMiddleware, timeout_s=settings.upload_timeout_s)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app
