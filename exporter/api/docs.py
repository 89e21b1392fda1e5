"""The API explorers, /docs (Swagger UI) and /redoc, with their scripts served by the exporter.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they stay blank with no network.
These load them from `/static/docs/`, the package data of `fastapi-offline` (pinned in
pyproject.toml). Its 1.7.7 ships swagger-ui-dist 5.32.6 (swagger-ui-bundle.js, swagger-ui.css)
and redoc 2.5.3 (bundles/redoc.standalone.js) byte for byte as published on npm, and FastAPI's
favicon. A dependency rather than vendored copies keeps megabytes of minified JavaScript out of
this repository and our wheel.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL: Final = "/static/docs"
ASSETS_PACKAGE: Final = ("fastapi_offline", "static")
# The pages may load nothing from another origin: a CDN left in would fail here, not offline.
# Swagger UI's start-up is an inline script, allowed by its hash; both UIs style with inline
# <style> elements; Swagger UI's icons are data: images; ReDoc runs its search in a blob: worker.
# ReDoc's "API docs by Redocly" logo is an image on Redocly's CDN: blocked, the text stays.
PAGE_POLICY: Final = (
    "default-src 'none'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
INLINE_SCRIPT: Final = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def install_docs(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets on an app made with docs_url=None, redoc_url=None.

    The pages are left out of the OpenAPI document, as FastAPI's own are.
    """
    app.mount(ASSETS_URL, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    favicon_url = f"{ASSETS_URL}/favicon.png"
    swagger = get_swagger_ui_html(
        openapi_url=openapi_url, title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css", swagger_favicon_url=favicon_url)
    redoc = get_redoc_html(
        openapi_url=openapi_url, title=f"{app.title} - ReDoc",
        redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js", redoc_favicon_url=favicon_url,
        with_google_fonts=False)
    app.add_api_route("/docs", _page(swagger), include_in_schema=False)
    app.add_api_route("/redoc", _page(redoc), include_in_schema=False)


def _page(rendered: HTMLResponse) -> Callable[[], Awaitable[HTMLResponse]]:
    """A route answering the page rendered once, with the policy that lets it run."""
    body = bytes(rendered.body)
    sources = ["'self'", *map(_hash_source, INLINE_SCRIPT.findall(body.decode()))]
    headers = {"Content-Security-Policy": PAGE_POLICY.format(scripts=" ".join(sources))}

    async def page() -> HTMLResponse:
        return HTMLResponse(body, headers=headers)

    return page


def _hash_source(script: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
