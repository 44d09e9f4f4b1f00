"""One JSON error shape for every service: ``{"error": {"code": "...", "message": "..."}}``.

Raise a :class:`ServiceError` subclass anywhere in a request; :func:`install_error_handlers` turns it, and
FastAPI's own errors (unknown route, malformed form, body-parsing failures), into that shape with the right
status. Messages describe the problem in terms of the request, never echo uploaded content or DICOM tags.

=====  =========================  ====================================================================
HTTP   code                       when
=====  =========================  ====================================================================
400    ``malformed_request``      not a multipart form, a missing or invalid field, too many files
401    ``unauthorized``           missing or wrong ``X-API-Key``; the web page: no or a wrong login
403    ``forbidden``              the web page: a client from outside this machine with no logins set, or
                                  an upload posted from another site (services/web/access.py)
404    ``not_found``              unknown route or resource; an explain job unknown, expired or another key's
405    ``method_not_allowed``     a known route called with the wrong HTTP method
406    ``not_acceptable``         a DICOM answer (``Accept: application/dicom``, ``format=dicom``) asked for
                                  JPEG/PNG input, or a job's DICOM results for one whose input was not DICOM
413    ``too_large``              request body or file over the size limit (checked while streaming)
415    ``unsupported_media_type`` the file is not JPEG, PNG or DICOM
422    ``invalid_form_value``     a form value too long or holding control characters
422    ``unknown_task``           ``task`` is not a registered task
422    ``unknown_model``          ``role`` (or ``model``, its deprecated old name) is not ``student`` or ``teacher``
422    ``unknown_aggregation``    ``aggregate`` (``/predict/study``) is not ``auto``, ``mil`` or ``mean``
422    ``unknown_method``         ``methods`` (``/explain``) names no explainer we offer
422    ``unknown_target``         ``target`` (``/explain``) is neither a class name nor a class index
422    ``too_many_files``         a study (``/predict/study``) over ``DISEASEID_MAX_STUDY_FILES`` files
422    ``mixed_patients``         a study's DICOM slices name different PatientIDs (``mixed_studies``,
                                  ``mixed_series``: StudyInstanceUID, SeriesInstanceUID; ``mixed_orientation``,
                                  ``mixed_pixel_spacing``: ImageOrientationPatient, PixelSpacing)
422    ``mixed_sizes``            a study's slices differ in shape (JPEG/PNG aspect, DICOM Rows x Columns)
422    ``mixed_formats``          a study mixes DICOM with JPEG/PNG
422    ``cannot_write_dicom``     the DICOM input lacks what a DICOM result needs (its UIDs; one study, one
                                  patient)
422    ``invalid_image``          empty, undecodable, degenerate (too small, flat) or unusable DICOM
422    ``image_too_large``        over the pixel cap (decompression bomb), refused before decoding
503    ``not_ready``              models still loading; no explain worker alive
503    ``busy``                   too many large images decoding at once; ``Retry-After`` says when to retry
503    ``queue_unavailable``      the explain queue (Redis) is unreachable; ``Retry-After`` says when to retry
500    ``internal_error``         a bug; the details go to the log, not to the client
=====  =========================  ====================================================================
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

log = logging.getLogger("services.errors")


class ServiceError(Exception):
    """An expected failure with an HTTP status, a stable machine-readable code and a human message."""

    status: int = 500
    code: str = "internal_error"
    # Seconds a client should wait before trying again (sent as Retry-After), for transient refusals.
    retry_after: int | None = None

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if retry_after is not None:
            self.retry_after = retry_after


class MalformedRequest(ServiceError):
    status, code = 400, "malformed_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class UnknownTask(ServiceError):
    status, code = 422, "unknown_task"


class UnknownModel(ServiceError):
    status, code = 422, "unknown_model"


class UnknownAggregation(ServiceError):
    status, code = 422, "unknown_aggregation"


class UnknownMethod(ServiceError):
    status, code = 422, "unknown_method"


class UnknownTarget(ServiceError):
    status, code = 422, "unknown_target"


class InvalidFormValue(ServiceError):
    status, code = 422, "invalid_form_value"


class TooManyFiles(ServiceError):
    status, code = 422, "too_many_files"


class NotOneStudy(ServiceError):
    """A study's slices are certainly not one subject's series; ``code`` names the mismatch (``mixed_*``)."""

    status, code = 422, "mixed_series"


class NotAcceptable(ServiceError):
    """The answer asked for cannot be given for this input (a DICOM result of a JPEG/PNG)."""

    status, code = 406, "not_acceptable"


class CannotWriteDicomResult(ServiceError):
    status, code = 422, "cannot_write_dicom"


class PayloadTooLarge(ServiceError):
    status, code = 413, "too_large"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class InvalidImage(ServiceError):
    status, code = 422, "invalid_image"


class ImageTooLarge(InvalidImage):
    code = "image_too_large"


class NotReady(ServiceError):
    status, code = 503, "not_ready"


class Busy(ServiceError):
    """Too many large images being decoded at once: try again shortly (Retry-After)."""

    status, code, retry_after = 503, "busy", 1


class QueueUnavailable(ServiceError):
    """The explain queue (Redis) is unreachable: try again in a few seconds (Retry-After)."""

    status, code, retry_after = 503, "queue_unavailable", 2


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"error": {"code": "unsupported_media_type",
                                "message": "the file is not a JPEG, PNG or DICOM image"}}]})

    error: ErrorDetail


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


_DESCRIPTIONS = {
    400: "Malformed request (not a multipart form, a missing field, too many files)",
    401: "Missing or invalid X-API-Key",
    404: "Not found",
    406: "A DICOM answer was asked for a JPEG/PNG input (DICOM results need DICOM input)",
    413: "Request body or file over the size limit",
    415: "Unsupported file type (JPEG, PNG and DICOM are accepted)",
    422: "Unknown task or model, or an unusable image (empty, undecodable, degenerate, decompression bomb)",
    503: "Not ready (models loading, queue unreachable) or busy decoding large images; see Retry-After",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a route: each status documented with the error body."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS.get(s, "Error")} for s in statuses}


_HTTP_CODES = {400: "malformed_request", 401: "unauthorized", 403: "unauthorized", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 413: "too_large", 415: "unsupported_media_type",
               503: "not_ready"}


def _validation_message(exc: RequestValidationError) -> str:
    # loc and msg only: the offending input may be an upload or a secret and is never echoed.
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "header"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = {"WWW-Authenticate": "APIKey"} if exc.status == 401 else {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return error_response(exc.status, exc.code, exc.message, headers or None)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = str(exc.detail)
    if isinstance(exc.__cause__, MultiPartException):
        # Starlette's own form limits (too many files or fields) say exactly what went wrong.
        message = f"{message}: {exc.__cause__.message}"
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, message, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, "malformed_request", _validation_message(exc))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__,
              exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def _translated(make: Callable[[Exception], ServiceError]):
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        error = make(exc)
        log.warning("%s on %s %s: %s", error.code, request.method, request.url.path, exc)
        return await _service_error(request, error)

    return handler


def install_error_handlers(app: FastAPI,
                           translate: Mapping[type[Exception], Callable[[Exception], ServiceError]] | None = None,
                           ) -> None:
    """Register the handlers that give every error the JSON shape above; ``translate`` turns a library's
    exception (say, a lost Redis connection) into the service error it means, logged as a warning."""
    for exc_type, make in (translate or {}).items():
        app.add_exception_handler(exc_type, _translated(make))
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
