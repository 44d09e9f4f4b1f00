"""The answer of ``/predict`` and ``/predict/study`` as DICOM: a TID 1500 Comprehensive SR in the input's study.

Asked for with ``Accept: application/dicom`` or the form field ``format=dicom``; JSON stays the default (no
Accept header, ``*/*``, or JSON preferred). The SR is built from the JSON answer itself
(:mod:`services.common.dicom_results`), so both say the same; it needs DICOM input (it copies the patient
and study and references the source instances): anything else asking for it gets 406 ``not_acceptable``.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import Form, Request, Response

from services.common.errors import CannotWriteDicomResult, InvalidFormValue, NotAcceptable
from services.common.images import DecodedImage
from services.common.validation import form_text

DICOM = "application/dicom"
JSON = "application/json"

FormatForm = Annotated[str | None, Form(
    description="`json` (default) or `dicom`: the answer as a DICOM Structured Report (TID 1500) in the "
                "input's study, for DICOM input only; the same as sending `Accept: application/dicom`",
    examples=["json"])]

DICOM_RESPONSE = {200: {"content": {"application/json": {}, DICOM: {}},
                        "description": "The answer (JSON), or with `Accept: application/dicom` / `format=dicom` "
                                       "a DICOM SR (TID 1500) referencing the input instances"}}


def _accept_quality(accept: str) -> dict[str, float]:
    """``{media type: q}`` of an Accept header (parameters other than q ignored)."""
    out: dict[str, float] = {}
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        out[media.lower()] = max(q, out.get(media.lower(), 0.0))
    return out


def wants_dicom(request: Request, format: str | None) -> bool:
    """Whether the client asked for the SR: ``format`` decides when sent, else the Accept header, where
    ``application/dicom`` must be listed and rank at least as high as JSON (wildcards mean JSON)."""
    value = form_text(format, "format").strip().lower()
    if value:
        if value not in ("json", "dicom"):
            raise InvalidFormValue(f"format must be json or dicom, not {value[:20]!r}")
        return value == "dicom"
    q = _accept_quality(request.headers.get("accept", ""))
    dicom = q.get(DICOM, 0.0)
    return dicom > 0 and dicom >= max(q.get(JSON, 0.0), q.get("application/*", 0.0), q.get("*/*", 0.0))


def require_dicom_input(images: Sequence[DecodedImage]) -> None:
    """406 unless every file is DICOM: a DICOM result lives in its source's study."""
    for i, image in enumerate(images):
        if image.format != "dicom":
            which = f"file {i} is" if len(images) > 1 else "the file is"
            raise NotAcceptable(f"a DICOM answer needs DICOM input ({which} {image.format.upper()}): the SR is "
                                "stored in the input's study; send DICOM or ask for JSON")


def _sr_bytes(uploads: Sequence[bytes], body: dict[str, Any], study: bool) -> bytes:
    from services.common import dicom_results as dr

    try:
        headers = [dr.read_header(data, force=True) for data in uploads]
        task, model = body["task"], body["model"]  # a study's: what produced the subject-level finding
        params = [f"task={task}", f"role={model['role']}"]
        if study:
            aggregation = body["aggregation"]
            params.append(f"subject-level={aggregation['method']}")
            slices = body.get("slice_model") or model
            params.append(f"slice model={slices['name']} version {slices['version']}")
            if aggregation.get("model"):
                params.append(f"subject-level model={aggregation['model']['name']} "
                              f"version {aggregation['model']['version']}")
            sr = dr.prediction_sr(
                headers, dr.Finding.from_answer(task, body["subject"]),
                dr.Algorithm(model["name"], model["version"], tuple(params)),
                used=[s["used"] for s in body["slices"]],
                slices=[dr.Finding.from_answer(task, s) for s in body["slices"]],
                attention=aggregation.get("attention"))
        else:
            sr = dr.prediction_sr(headers, dr.Finding.from_answer(task, body),
                                  dr.Algorithm(model["name"], model["version"], tuple(params)))
        return dr.dicom_bytes(sr)
    except dr.CannotWriteDicom as exc:
        raise CannotWriteDicomResult(str(exc)) from None


async def dicom_answer(run: Callable[..., Awaitable[Any]], uploads: Sequence[bytes], body: dict[str, Any], *,
                       study: bool = False) -> Response:
    """The SR of ``body`` (the JSON answer) for the DICOM files ``uploads``, built on the inference threads."""
    data = await run(_sr_bytes, uploads, body, study)
    return Response(data, media_type=DICOM,
                    headers={"Content-Disposition": 'attachment; filename="diseaseid-sr.dcm"'})
