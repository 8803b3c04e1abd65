"""``create_app(settings)``: the FastAPI application. Wiring happens here and nowhere else:
the lifespan connects to the backends (queue_core.connect) and closes them on shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from queue_core import ContractRegistry, HandlerNotFound, Settings, connect
from queue_core.contracts import load_contracts
from queue_core.index import RateLimiter
from queue_core.store import PgSessionStore, PgTokenStore
from queue_core.telemetry.metrics import Metrics

from .auth import TokenVerifier
from .backend import ApiBackend
from .dashboard import build_dashboard_router
from .docs import build_docs_router
from .errors import install_error_handlers
from .headers import SecurityHeaders
from .limits import BodyLimits
from .routes import build_router
from .schemas import InputCheck, job_create_model
from .sessions import DashboardSessions

API_VERSION = "1"


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
    verifier = TokenVerifier(settings.api_tokens, cache_seconds=settings.api_token_cache_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # pool_min_size 0: the API starts, and answers 503, while Postgres is down.
        metrics = Metrics()
        lazy = settings.model_copy(update={"pool_min_size": 0})
        async with connect(lazy, metrics, contracts=contracts) as queue:
            verifier.attach(PgTokenStore(queue.pool))
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
                sessions=PgSessionStore(queue.pool),
            )
            try:
                yield
            finally:
                verifier.attach(None)

    app = FastAPI(
        title="hybridq",
        version=API_VERSION,
        description="Enqueue and inspect background jobs. Every route but /healthz and "
        "/readyz needs `Authorization: Bearer <token>` (a token from `hybridq token new`); "
        "errors are "
        '`{"error": {"code": ..., "message": ...}}`.',
        lifespan=lifespan,
        # A redirect to the slash-less path would be built from the Host header, which the
        # client controls: /jobs/ is a 404 instead.
        redirect_slashes=False,
        # Served by docs.py, behind auth and without a CDN.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodyLimits, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(SecurityHeaders)  # outermost: the size limit's 413 gets them too
    install_error_handlers(app, frozenset(c.job_type for c in contracts))
    app.include_router(
        build_router(
            job_create_model(contracts),
            InputCheck(contracts, settings.api_max_input_bytes),
            settings,
            verifier,
        )
    )
    sessions = DashboardSessions(
        verifier, settings.api_session_idle_seconds, settings.api_session_max_seconds
    )
    app.include_router(build_dashboard_router(sessions))
    app.include_router(
        build_docs_router(
            app.openapi, verifier, sessions, public=settings.api_public_docs, title=app.title
        )
    )
    return app
