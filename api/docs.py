"""The API's documentation: /openapi.json, Swagger UI at /docs and ReDoc at /redoc.

- Behind the same auth as every other route unless HYBRIDQ_API_PUBLIC_DOCS: a bearer token
  (any user's) or a dashboard session (an admin's browser; a browser without one is sent to
  the dashboard's login, which comes back here).
- Every asset is served by the API itself from the fastapi-offline package (Swagger UI and
  ReDoc as published, pinned by that package), so the pages work on a network without
  internet access. The assets are public: they are the libraries, not our documentation.
- No inline script: the pages load the library and a small start-up script of ours, under a
  CSP that allows scripts from this origin only. Styles may be inline (both libraries set
  them from JS); images from this origin and data: URIs (Swagger UI's icons). ReDoc always
  adds its vendor's logo from a CDN: the CSP blocks it before a request leaves, and ReDoc
  hides the image.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from .auth import TokenVerifier
from .errors import ApiError
from .sessions import COOKIE, DashboardSessions

HERE = Path(__file__).parent
LIBRARY_ASSETS = {  # file of the fastapi_offline package -> media type
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
}
OWN_ASSETS = {"docs.js": "text/javascript"}  # api/static
ASSET_CACHE = "public, max-age=86400"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; worker-src blob:; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "Cache-Control": "no-store",
}


def build_docs_router(
    openapi: Callable[[], dict[str, Any]],
    verifier: TokenVerifier,
    sessions: DashboardSessions,
    *,
    public: bool,
    title: str,
) -> APIRouter:
    """The documentation routes for the schema ``openapi()`` returns."""
    router = APIRouter(include_in_schema=False)
    assets = {name: _library_asset(name) for name in LIBRARY_ASSETS}
    assets.update({name: (HERE / "static" / name).read_bytes() for name in OWN_ASSETS})
    media = {**LIBRARY_ASSETS, **OWN_ASSETS}
    pages = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)

    async def allowed(request: Request) -> bool:
        if public or await verifier.verify(request.headers.get("authorization")) is not None:
            return True
        backend = request.app.state.backend
        return await sessions.check(backend.sessions, request.cookies.get(COOKIE), True)

    async def page(request: Request, template: str) -> Response:
        if not await allowed(request):
            return RedirectResponse(f"/dashboard?next={request.url.path}", status_code=303)
        html = pages.get_template(template).render(
            title=title, root=request.scope.get("root_path", "")
        )
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @router.get("/openapi.json")
    async def openapi_json(request: Request) -> JSONResponse:
        if not await allowed(request):
            raise ApiError(
                401,
                "unauthorized",
                "a valid bearer token (or a dashboard session) is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return JSONResponse(openapi())

    @router.get("/docs")
    async def swagger_ui(request: Request) -> Response:
        return await page(request, "docs.html")

    @router.get("/redoc")
    async def redoc(request: Request) -> Response:
        return await page(request, "redoc.html")

    @router.get("/docs/assets/{name}")
    async def asset(name: str) -> Response:
        if name not in assets:
            raise ApiError(404, "not_found", "no such asset")
        return Response(
            assets[name], media_type=media[name], headers={"Cache-Control": ASSET_CACHE}
        )

    return router


def _library_asset(name: str) -> bytes:
    return resources.files("fastapi_offline").joinpath("static", name).read_bytes()
