"""Around the model call: drop work whose client left, and never answer a non-finite number.

The door check itself (estimated wait vs deadline, 503 + Retry-After) lives on ``BatchWorker`` and
``InferenceService.admit``; this module holds what runs while a job waits and after it ran.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import torch

from server.errors import NonFiniteOutputError, RequestTimeoutError, ServerError
from server.metrics import ServerMetrics

if TYPE_CHECKING:
    from server.batch_jobs import JobResult

Receive = Callable[[], Awaitable[dict[str, Any]]]


class ClientDisconnectedError(ServerError):
    """The client closed the connection while its job was queued; the job was dropped unrun. Nobody
    reads this answer: it exists so the metrics count the request under nginx's 499."""

    status_code, code = 499, "client_closed_request"

    def __init__(self) -> None:
        super().__init__("the client closed the connection before its request ran")


async def cancel_when_client_leaves(receive: Receive, futures: Iterable[Future], metrics: ServerMetrics) -> bool:
    """Wait for the request's ``http.disconnect`` (the body is already read, so ``receive`` only
    returns at a disconnect) and cancel the request's queued jobs (a long recording has one a segment);
    True if any was dropped before it ran."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            break
    dropped = [future.cancel() for future in futures]  # False once a batch has started it: then it just finishes
    if any(dropped):
        metrics.abandoned_requests.inc()
    return any(dropped)


async def await_results(futures: list[Future], *, receive: Receive | None, deadline_s: float, grace_s: float,
                        metrics: ServerMetrics) -> list[JobResult]:
    """Wait for a request's queued jobs (a long recording has one a segment), every answer checked finite.
    Past ``deadline_s + grace_s``: 504. With ``receive`` (the request's ASGI receive), a client that
    disconnects while they are queued has them dropped unrun (499); when one job fails, the others that
    have not started are dropped too."""
    watcher = (asyncio.ensure_future(cancel_when_client_leaves(receive, futures, metrics))
               if receive is not None else None)
    try:
        results = await asyncio.wait_for(asyncio.gather(*(asyncio.wrap_future(f) for f in futures)),
                                         deadline_s + grace_s)
    except asyncio.TimeoutError:
        raise RequestTimeoutError(f"no answer within {deadline_s + grace_s:.0f} s") from None
    except asyncio.CancelledError:
        if watcher is not None and watcher.done() and not watcher.cancelled() and watcher.result():
            raise ClientDisconnectedError() from None
        raise
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
    for result in results:
        check_finite(result.predictions)
    return results


async def results_in_order(futures: list[Future], *, deadline_s: float, grace_s: float) -> AsyncIterator[JobResult]:
    """A request's queued jobs' results one by one, in queue order, each as soon as it and those before it are
    done (a streamed answer: a long recording's text segment by segment), every answer checked finite. Past
    ``deadline_s + grace_s`` in all: 504. Leaving early (the client went away, an error) drops the jobs that have
    not started."""
    ends_at = time.monotonic() + deadline_s + grace_s
    try:
        for future in futures:
            try:
                result = await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, ends_at - time.monotonic()))
            except asyncio.TimeoutError:
                raise RequestTimeoutError(f"no answer within {deadline_s + grace_s:.0f} s") from None
            check_finite(result.predictions)
            yield result
    finally:
        for future in futures:
            future.cancel()


def check_finite(predictions: Iterable[Any]) -> None:
    """The last guard before an answer leaves: every embedding and score must be a finite number."""
    for prediction in predictions:
        embedding = getattr(prediction, "embedding", None)
        if isinstance(embedding, torch.Tensor) and not bool(torch.isfinite(embedding).all()):
            raise NonFiniteOutputError(_NON_FINITE)
        scores = getattr(prediction, "scores", None) or {}
        if any(not math.isfinite(float(value)) for value in scores.values()):
            raise NonFiniteOutputError(_NON_FINITE)


_NON_FINITE = ("the model's answer for this clip is not a finite number (NaN or infinite), so none is given; "
               "the clip or the adapter set defeats the model numerically")
