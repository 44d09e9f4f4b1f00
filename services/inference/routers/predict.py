"""Predictions: one slice (``POST /predict``) or the slices of one subject (``POST /predict/study``)."""
from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile

from diseaseid.answers import PredictResponse, StudyResponse
from diseaseid.serving import Predictor, StudyAnswer, StudyModel, answer_study
from diseaseid.serving.study import study_batch_size
from diseaseid.serving.study_checks import MixedStudy, SliceSource, StudyWarning, check_study
from services.common.app import DecodeGateDep
from services.common.auth import require_api_key
from services.common.errors import (
    NotOneStudy,
    NotReady,
    ServiceError,
    TooManyFiles,
    UnknownAggregation,
    error_responses,
)
from services.common.images import DecodedImage
from services.common.uploads import DecodeGate, read_upload_bytes
from services.common.validation import (
    reject_repeated_fields,
    resolve_aggregation,
    resolve_model,
    resolve_task,
    role_field,
)
from services.inference.deps import MetricsDep, ModelsDep, SettingsDep
from services.inference.dicom_answer import (
    DICOM_RESPONSE,
    FormatForm,
    dicom_answer,
    require_dicom_input,
    wants_dicom,
)
from services.inference.model_runner import ModelRunner
from services.inference.settings import InferenceSettings

router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key)])

TaskForm = Annotated[str, Form(description="Which diagnosis: `tumor` or `dementia`", examples=["tumor"])]
RoleForm = Annotated[str | None, Form(
    description="`student` (fast) or `teacher` (larger); default per task from settings (student)",
    examples=["student"])]
ModelForm = Annotated[str | None, Form(
    description="Deprecated: the old name of `role` (it never named a model, only its role); still read when "
                "`role` is not sent", deprecated=True)]

AggregateForm = Annotated[str | None, Form(
    description="How slices become one subject-level answer: `mil` (the task's subject-level head over the "
                "embeddings of the slice model its card names; slices in stack order, lowest first), `mean` (mean of "
                "the slices' probabilities), or `auto` (default: `mil` where the task ships one, else `mean`)",
    examples=["auto"])]


async def single_file_fields(request: Request) -> None:
    """Every field once: one ``file``, one ``task``, one ``role`` (or ``model``)."""
    reject_repeated_fields(await request.form())


async def single_study_fields(request: Request) -> None:
    """``files`` repeats; ``task``, ``role`` (or ``model``) and ``aggregate`` come once."""
    reject_repeated_fields(await request.form(), multiple=("files",))


def study_model(value: str | None, task: str, models: ModelRunner) -> StudyModel | None:
    """The subject-level model the ``aggregate`` form value asks for, or None for the mean of slices."""
    value = resolve_aggregation(value)
    if value == "mean":
        return None
    study = models.study_model(task)
    if study is None and value == "mil":
        if (task, "mil") in models.failures:
            raise NotReady(f"the subject-level model of {task} is not available on this server")
        raise UnknownAggregation(f"task {task!r} has no subject-level model; use aggregate=mean or auto")
    return study


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def model_ref(predictor: Predictor, role: str) -> dict:
    return {"role": role, "name": predictor.name, "arch": str(predictor.card.get("arch", "")),
            "version": predictor.version}


def subject_model_ref(answer: StudyAnswer, study: StudyModel | None, slices: dict) -> dict:
    """What produced a study's subject-level answer, so that ``model`` never names the slice model for an
    answer the head gave: the head where it ran (some slice was used), else the slice model whose probabilities
    were averaged."""
    if study is None or not answer.used:
        return {**slices, "reads": None}
    return {"role": "mil", "name": study.name, "arch": str(study.card.get("arch", "")), "version": study.version,
            "reads": study.backbone.name}


@router.post("/predict", response_model=PredictResponse, form_limits={"max_files": 1, "max_fields": 8},
             dependencies=[Depends(single_file_fields)],
             responses={**DICOM_RESPONSE, **error_responses(400, 401, 406, 413, 415, 422, 503)})
async def predict(
    request: Request, models: ModelsDep, settings: SettingsDep, metrics: MetricsDep, gate: DecodeGateDep,
    file: Annotated[UploadFile, File(description="One MRI slice: JPEG, PNG or single-frame DICOM")],
    task: TaskForm,
    role: RoleForm = None,
    model: ModelForm = None,
    format: FormatForm = None,
) -> dict | Response:
    """Classify one MRI slice: calibrated probabilities, label, OOD flag, model version, input facts. An image
    flagged as out-of-distribution gets no diagnosis: `outcome` is `not_a_brain_mri`, or `wrong_task` with
    `suited_task` naming the task whose slices it looks like, and `label` is null."""
    start = time.perf_counter()
    spec = resolve_task(task)
    role = resolve_model(role_field(role, model), settings.default_model_for(spec.name))
    as_dicom = wants_dicom(request, format)
    with metrics.observe("predict", spec.name, role):
        predictor = models.predictor(spec.name, role)
        data = await read_upload_bytes(file, settings.max_upload_bytes)
        t_read = time.perf_counter()

        def answer(image: DecodedImage):
            if as_dicom:
                require_dicom_input([image])
            return predictor.predict(image.array[None])[0]

        # Decoding and the forward pass run on the inference threads, in one trip for a slice that is not large
        # (large images take turns at the gate first).
        image, decode_s, pred = await gate.decode_then(data, answer, content_type=file.content_type,
                                                       filename=file.filename, run=models.run)
        done = time.perf_counter()
        metrics.slices.labels(spec.name, role).inc()
    body = {"task": spec.name, **pred.to_dict(), "model": model_ref(predictor, role), "input": image.info(),
            "timing_ms": {"decode": _ms(decode_s), "inference": _ms(done - t_read - decode_s),
                          "total": _ms(done - start)}}
    return await dicom_answer(models.run, [data], body) if as_dicom else body


Upload = tuple[bytes, str | None, str | None]  # bytes, declared content type, file name


async def _decode_study(uploads: list[Upload], gate: DecodeGate, run) -> list[DecodedImage]:
    """Every file decoded at once on the inference threads (a study's decodes used to run one after another);
    the first file that fails, in the order sent, names the error."""
    decoded = await asyncio.gather(*(gate.decode(data, content_type=content_type, filename=filename, run=run)
                                     for data, content_type, filename in uploads), return_exceptions=True)
    for i, result in enumerate(decoded):
        if isinstance(result, ServiceError):  # say which file, keep the status, code and Retry-After
            raise type(result)(f"file {i}: {result.message}", code=result.code, status=result.status,
                               retry_after=result.retry_after) from None
        if isinstance(result, BaseException):
            raise result
    return decoded


def one_stack(images: list[DecodedImage]) -> list[StudyWarning]:
    """422 (``mixed_*``) unless the slices can be one subject's series; the warnings where they may not be
    one stack (diseaseid.serving.study_checks)."""
    sources = [SliceSource(im.format, im.width, im.height, im.series) for im in images]
    try:
        return check_study(sources, [im.array for im in images])
    except MixedStudy as exc:
        raise NotOneStudy(exc.message, code=exc.code) from None


def study_role(aggregate: str | None, task: str, models: ModelRunner, settings: InferenceSettings) -> str:
    """The slice model of a study that names none: the backbone of the subject-level head where the head
    answers (its one pass per slice gives both the slices' answers and the head's embeddings; another slice
    model would add a second network per slice), else the task's default."""
    try:
        head = resolve_aggregation(aggregate) != "mean" and models.study_model(task)
    except ServiceError:  # refused with its own error below, where the request is counted
        head = None
    return head.backbone.role if head else settings.default_model_for(task)


def _predict_study(predictor: Predictor, images: list[DecodedImage], study: StudyModel | None = None,
                   map_batches=map, threads: int = 1) -> tuple[StudyAnswer, dict]:
    # Every slice once through each network, in small batches (study_batch_size) that the inference threads take
    # side by side.
    answer = answer_study(predictor, [im.array for im in images], study,
                          batch_size=study_batch_size(len(images), threads, predictor.device_type),
                          map_batches=map_batches)
    aggregation = {"method": answer.method, "model": None, "attention": None}
    if study is not None:
        aggregation["model"] = {"name": study.name, "version": study.version}
        if answer.attention is not None:
            aggregation["attention"] = [round(float(a), 6) for a in answer.attention]
    return answer, aggregation


@router.post("/predict/study", response_model=StudyResponse, form_limits={"max_files": 1024, "max_fields": 8},
             dependencies=[Depends(single_study_fields)],
             responses={**DICOM_RESPONSE, **error_responses(400, 401, 406, 413, 415, 422, 503)})
async def predict_study(
    request: Request, models: ModelsDep, settings: SettingsDep, metrics: MetricsDep, gate: DecodeGateDep,
    files: Annotated[list[UploadFile], File(description="Slices of one subject (repeat the field)")],
    task: TaskForm,
    role: RoleForm = None,
    model: ModelForm = None,
    aggregate: AggregateForm = None,
    format: FormatForm = None,
) -> dict | Response:
    """Classify the slices of one subject and combine them into one subject-level result: the task's
    attention-MIL head where it ships one (dementia), else the mean of the slices' probabilities. Slices
    flagged as not brain MRI are reported and left out of the subject-level result (`excluded`); when all
    are, the subject gets no diagnosis. Slices that cannot be one subject's series (DICOM naming different
    patients, studies or series, or another orientation, pixel spacing or size; JPEG/PNG of different shapes)
    are refused with 422 `mixed_*`; slices that may not be one stack get `warnings`."""
    start = time.perf_counter()
    spec = resolve_task(task)
    role = resolve_model(role_field(role, model), study_role(aggregate, spec.name, models, settings))
    as_dicom = wants_dicom(request, format)
    with metrics.observe("predict_study", spec.name, role):
        if len(files) > settings.max_study_files:
            raise TooManyFiles(f"{len(files)} files sent; a study takes at most {settings.max_study_files}")
        predictor = models.predictor(spec.name, role)
        study = study_model(aggregate, spec.name, models)
        uploads = [(await read_upload_bytes(f, settings.max_upload_bytes), f.content_type, f.filename)
                   for f in files]
        t_read = time.perf_counter()
        images = await _decode_study(uploads, gate, models.run)
        if as_dicom:
            require_dicom_input(images)
        warnings = await models.run(one_stack, images)
        decode_s = time.perf_counter() - t_read
        # coordinated off the inference threads, which run the batches
        answer, aggregation = await asyncio.to_thread(_predict_study, predictor, images, study, models.map,
                                                      settings.inference_workers)
        done = time.perf_counter()
        metrics.slices.labels(spec.name, role).inc(len(images))
    slice_model = model_ref(predictor, role)
    body = {
        "task": spec.name, "model": subject_model_ref(answer, study, slice_model), "slice_model": slice_model,
        "n_slices": len(images),
        "n_used": len(answer.used), "excluded": answer.excluded,
        "warnings": [{"code": w.code, "message": w.message, "slices": list(w.slices)} for w in warnings],
        "subject": answer.subject.to_dict(), "aggregation": aggregation,
        "slices": [{"index": i, **p.to_dict(), "used": not p.ood, "input": im.info()}
                   for i, (im, p) in enumerate(zip(images, answer.slices, strict=True))],
        "timing_ms": {"decode": _ms(decode_s), "inference": _ms(done - t_read - decode_s),
                      "total": _ms(done - start)},
    }
    return await dicom_answer(models.run, [u[0] for u in uploads], body, study=True) if as_dicom else body
