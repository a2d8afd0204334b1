"""One error shape for every failure: ``{"error": {"code", "message", "param"}}``.

Routes raise ``ApiError``; the handlers installed by ``install`` turn it, FastAPI's own validation
errors (``param`` names the field), a job spec's ``SpecError``, Starlette's HTTP errors (404 for an
unknown path, 405), a malformed multipart body (422 invalid_syntax) and an unreachable Redis (503 with
Retry-After) into that shape. Anything unexpected is logged with its traceback and answered
with a 500 in the same shape that says nothing about the inside.
"""
from __future__ import annotations

import logging

import redis
from python_multipart.exceptions import FormParserError

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from workers.spec import SpecError

log = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "request_too_large",
               415: "unsupported_media_type", 422: "invalid_request", 429: "rate_limited",
               503: "service_unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.param, self.headers = status, code, message, param, headers


def not_found(what: str, ident: str, param: str) -> ApiError:
    return ApiError(404, f"{what}_not_found", f"no {what.replace('_', ' ')} {ident!r}", param)


def error_body(code: str, message: str, param: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "param": param}}


def respond(status: int, code: str, message: str, param: str | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, param), status_code=status, headers=headers)


def _field(loc: tuple) -> str | None:
    """FastAPI's ``("query", "limit")`` or ``("body", "inputs", 0)`` -> ``limit`` / ``inputs[0]``."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    param = _field(tuple(first.get("loc", ())))
    message = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid":
        # its loc is ("body", <character offset>): a position, not a field; the code is the one a
        # malformed job spec gets (workers.spec)
        where = f" at character {param[1:-1]}" if param else ""
        code, message = "invalid_syntax", f"malformed JSON{where}: {first.get('ctx', {}).get('error', message)}"
        param = None
    elif tuple(first.get("loc", ())) == ("body",):   # the body as a whole: absent, not JSON, not an object
        media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            return respond(415, "unsupported_media_type", f"cannot read a body of type {media!r}: send JSON "
                           "(application/json)")
        code = "missing_field" if first.get("type") == "missing" else "invalid_value"
        message = f"the request body must be a JSON object: {message}"
    else:
        code = "missing_field" if first.get("type") == "missing" else "invalid_value"
        message = f"{param}: {message}" if param else message
    return respond(422, code, message, param)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return respond(exc.status, exc.code, exc.message, exc.param, exc.headers)

    @app.exception_handler(SpecError)
    async def _spec_error(request: Request, exc: SpecError):
        return respond(exc.http_status, exc.code, exc.message, exc.param)

    app.add_exception_handler(RequestValidationError, _validation)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path} (see /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        return respond(exc.status_code, code, message, None, getattr(exc, "headers", None))

    @app.exception_handler(FormParserError)
    async def _bad_multipart(request: Request, exc: FormParserError):
        # python-multipart's streaming parser (dataset uploads) on a body that is not valid multipart
        return respond(422, "invalid_syntax", f"malformed multipart/form-data body ({exc}); send the file as "
                       "curl -F file=@data.csv does, or the raw file with ?filename=", "file")

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def _redis_down(request: Request, exc: Exception):
        log.warning("Redis unreachable on %s %s: %s", request.method, request.url.path, exc)
        return respond(503, "service_unavailable", "the job database (Redis) is unreachable; retry shortly",
                       headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return respond(500, "internal_error", "the server hit an unexpected error; it has been logged")
