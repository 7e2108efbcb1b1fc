"""OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with a proper HTTP status.

Every failure path of the server ends here, including FastAPI's own (422 validation, 404 route, 405
method), so clients see one error shape and the server never answers with a stack trace.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("eurolora.serve")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    500: "server_error",
    503: "server_error",
}


class APIError(Exception):
    """An error answered to the client as OpenAI-style JSON."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str | None = None) -> None:  # `type`: the OpenAI field's name
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def validation_error(exc: ValidationError | RequestValidationError) -> APIError:
    """The first problem of a pydantic validation error as a 400 naming the offending field."""
    errors = exc.errors()
    if not errors:
        return APIError(400, "invalid request body", code="invalid_request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return APIError(400, "the request body is not valid JSON", code="invalid_json")
    loc = [str(part) for part in first.get("loc", ()) if part != "body" and not _is_type_tag(part)]
    param = ".".join(loc) or None
    # The message names the field and the rule, never echoes the offending value (it may be prompt text).
    message = f"{param}: {first.get('msg', 'invalid value')}" if param else str(first.get("msg", "invalid body"))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    code = "missing_field" if first.get("type") == "missing" else "invalid_value"
    return APIError(400, message + more, code=code, param=param)


def _is_type_tag(part: object) -> bool:
    """pydantic puts the member type of a union in `loc` (`content.str`, `content.list[TextPart]`)."""
    if not isinstance(part, str):
        return False
    return part in ("str", "int", "float", "bool", "none") or "[" in part or part[:1].isupper()


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()  # 400 as OpenAI and vLLM answer, not FastAPI's 422

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return APIError(exc.status_code, str(exc.detail), code=code).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("serve: internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return APIError(500, f"internal server error ({type(exc).__name__})", code="internal_error").response()
