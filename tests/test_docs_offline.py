"""/docs and /redoc work with no network: each script, stylesheet and icon is the exporter's own."""

from __future__ import annotations

import asyncio
import html
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from support import ExporterFactory, require_binary

from exporter.api import create_app
from exporter.service import build_exporter
from exporter.settings import Settings
from exporter.tokens import TokenRegistry

CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
# The smallest asset, the favicon, is 5 kB; an empty file or an error page is far below.
NON_TRIVIAL_BYTES = 1_000


class _AssetLinks(HTMLParser):
    """The URLs a page makes the browser load: <script src>, <link href>, <img src>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value is not None]


@pytest.fixture
def app(tmp_path) -> Iterator[FastAPI]:
    exporter = build_exporter(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"),
                              registry=CollectorRegistry())
    yield create_app(exporter, tokens=TokenRegistry(fixed=[]))
    exporter.close()


def get(app: FastAPI, *paths: str) -> list[httpx.Response]:
    async def fetch() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(fetch())


def asset_urls(page: str) -> list[str]:
    parser = _AssetLinks()
    parser.feed(page)
    return parser.urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_docs_page_loads_only_assets_the_exporter_serves(app, page):
    [response] = get(app, page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = asset_urls(response.text)
    assert any(url.endswith(".js") for url in urls)
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), url
    for url, asset in zip(urls, get(app, *urls), strict=True):
        assert asset.status_code == 200, url
        assert CONTENT_TYPES[PurePosixPath(url).suffix] in asset.headers["content-type"], url
        assert len(asset.content) > NON_TRIVIAL_BYTES, url


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_docs_page_may_load_nothing_from_another_origin(app, page):
    [response] = get(app, page)
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "http" not in policy and "*" not in policy


def test_the_openapi_document_is_served_without_the_docs_pages(app):
    [response] = get(app, "/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/events" in paths
    assert not {"/docs", "/redoc"} & set(paths)


@pytest.mark.parametrize(("page", "rendered_marker"), [("docs", "opblock"),
                                                       ("redoc", "api-content")])
def test_a_browser_renders_every_operation_from_the_exporter_alone(
        exporter_factory: ExporterFactory, tmp_path, page, rendered_marker):
    chromium = require_binary("chromium", "chromium")  # `make system-deps` installs it
    exporter = exporter_factory()
    spec = httpx.get(f"{exporter.url}/openapi.json", timeout=10).json()
    summaries = {operation["summary"] for item in spec["paths"].values()
                 for operation in item.values()}
    # --virtual-time-budget lets the page's scripts and its fetch of /openapi.json finish before
    # the DOM is dumped; --disable-background-networking keeps Chromium's own traffic off.
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", f"--user-data-dir={tmp_path / 'chromium'}",
         "--virtual-time-budget=15000", "--dump-dom", f"{exporter.url}/{page}"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert rendered_marker in dom
    assert [summary for summary in summaries if summary not in html.unescape(dom)] == []
