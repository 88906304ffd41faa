"""Count and time inference requests (including failed ones) per model, endpoint and status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter

from starlette.responses import Response

from infertap.serving.metrics import ServerMetrics
from infertap.serving.repository import ModelRepository
from infertap.serving.rest.errors import status_for

UNKNOWN_MODEL = "_unknown"  # one label for all unknown names, so clients cannot blow up cardinality


async def metered(
    metrics: ServerMetrics,
    repository: ModelRepository,
    name: str,
    endpoint: str,
    handler: Callable[[], Awaitable[Response]],
) -> Response:
    """Run `handler`, record its status and latency, and re-raise its errors for the error handlers."""
    start = perf_counter()
    code = 500
    try:
        response = await handler()
        code = response.status_code
        return response
    except BaseException as err:
        code = status_for(err)
        raise
    finally:
        label = name if repository.find(name) is not None else UNKNOWN_MODEL
        metrics.observe_request(label, endpoint, code, perf_counter() - start)
