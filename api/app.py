"""``create_app(settings)``: the FastAPI application. Wiring happens here and nowhere else:
the lifespan connects to the backends (queue_core.connect) and closes them on shutdown."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from queue_core import ContractRegistry, HandlerNotFound, Settings, connect
from queue_core.contracts import load_contracts
from queue_core.index import RateLimiter
from queue_core.telemetry.metrics import Metrics

from .auth import TokenVerifier
from .backend import ApiBackend
from .dashboard import build_dashboard_router
from .errors import install_error_handlers
from .limits import BodySizeLimit
from .routes import build_router
from .schemas import job_create_model

API_VERSION = "1"


def _dashboard_secret(settings: Settings) -> bytes:
    """The key of the dashboard's CSRF tokens. Every replica of the API must use the same
    one (a form rendered by one may be posted to another): HYBRIDQ_API_SESSION_SECRET, or
    else one derived from the token configuration, which replicas share and clients never
    see."""
    if settings.api_session_secret:
        return hashlib.sha256(settings.api_session_secret.encode()).digest()
    material = "\n".join(["hybridq-dashboard-csrf", *sorted(settings.api_tokens)])
    return hashlib.sha256(material.encode()).digest()


def create_app(
    settings: Settings | None = None, contracts: ContractRegistry | None = None
) -> FastAPI:
    """The API for ``settings`` (default: from the environment), accepting the job types
    of ``contracts`` (default: those Settings.handlers_module registers). Raises
    HandlerNotFound when neither is given or the module cannot be loaded."""
    settings = settings or Settings()
    if contracts is None:
        if not settings.handlers_module:
            raise HandlerNotFound(
                "the API needs the handlers module that declares the job types it accepts: "
                "set HYBRIDQ_HANDLERS_MODULE (hybridq api: or pass --handlers MODULE)"
            )
        contracts = load_contracts(settings.handlers_module)
    verifier = TokenVerifier(settings.api_tokens)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # pool_min_size 0: the API starts, and answers 503, while Postgres is down.
        metrics = Metrics()
        lazy = settings.model_copy(update={"pool_min_size": 0})
        async with connect(lazy, metrics, contracts=contracts) as queue:
            app.state.backend = ApiBackend(
                service=queue.job_service,
                store=queue.store,
                index=queue.index,
                limiter=RateLimiter(
                    queue.redis,
                    settings.namespace,
                    settings.api_rate_limit_per_second,
                    settings.api_rate_limit_burst,
                ),
                metrics=metrics,
            )
            yield

    app = FastAPI(
        title="hybridq",
        version=API_VERSION,
        description="Enqueue and inspect background jobs. Every route but /healthz and "
        "/readyz needs `Authorization: Bearer <token>`; errors are "
        '`{"error": {"code": ..., "message": ...}}`.',
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    install_error_handlers(app, frozenset(c.job_type for c in contracts))
    app.include_router(
        build_router(job_create_model(contracts, settings.api_max_input_bytes), settings, verifier)
    )
    app.include_router(build_dashboard_router(verifier, csrf_secret=_dashboard_secret(settings)))
    return app
