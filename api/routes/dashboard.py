"""The web dashboard: ``GET /`` (and ``/jobs/{id}``, the same page) serves api/static/index.html; the
scripts and styles under ``/static``. Plain HTML, CSS and JavaScript modules, no build step. The page
calls the same REST API with the key the person entered (kept in the browser's localStorage) and reads
the live event stream with fetch(), so the key travels in the Authorization header, never in a URL."""
from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parents[1] / "static"
# the page may load only its own scripts and talk only to its own origin (the key is in localStorage)
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)


def _version() -> str:
    """A digest of the static files, appended to their URLs so a browser never runs a stale script."""
    h = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:12]


def _page() -> HTMLResponse:
    html = (STATIC / "index.html").read_text().replace("{{version}}", _version())
    return HTMLResponse(html, headers={"Cache-Control": "no-cache", "Content-Security-Policy": _CSP,
                                       "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"})


@router.get("/")
def dashboard():
    return _page()


@router.get("/jobs/{job_id}")
def dashboard_job(job_id: str):
    return _page()


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
