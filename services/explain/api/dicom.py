"""An explanation of a DICOM slice as DICOM: the heatmaps and panel as Secondary Capture images and an SR
(TID 1500) with the explained prediction that references them, all in the slice's study.

``POST /explain`` keeps the upload's header (no pixels), sealed, in the job's own meta
(:func:`remember_source`), so that it lives exactly as long as the job: kept as a result file from the
submission on, it expired before a job that waited or ran longer than the TTL had finished, and the job's DICOM
results were then refused as if the input had been a JPEG. The first ``GET /explain/{id}/dicom`` builds the
objects from it, the job's result (prediction, model, explained class) and its PNGs
(:mod:`services.common.dicom_results`) and keeps them with the other result files, so every later request gets
the very same bytes. Nothing here touches the worker: the job itself is the same whatever the input's format.
"""
from __future__ import annotations

from fastapi import UploadFile
from rq import Queue
from rq.job import Job

from services.common.errors import CannotWriteDicomResult, NotAcceptable, NotFound
from services.explain.api.views import fetch_job, job_state
from services.explain.redis_store import ExplainStore
from services.explain.sealing import SealError, result_context

SOURCE = "source.dcm"  # the upload's header, pixels left out: its sealing context (a result file before)
META = "dicom_source"  # where the job's meta keeps it
INDEX = "dicom.index"  # names of the built objects, comma-separated, in the order served
OBJECT_NAMES = ("gradcam", "lrp", "panel", "sr")


def object_file(name: str) -> str:
    """Where a built object is kept among the job's result files."""
    return f"dicom-{name}.dcm"


async def remember_source(store: ExplainStore, queue: Queue, job_id: str, upload: UploadFile) -> None:
    """Keep the header of a DICOM upload (already read and decoded: the bytes are in memory) with the job."""
    from starlette.concurrency import run_in_threadpool

    from services.common.dicom_results import header_bytes, read_header

    await upload.seek(0)
    data = await upload.read()
    header = await run_in_threadpool(lambda: header_bytes(read_header(data, force=True)))
    sealed = store.sealer.seal(header, result_context(job_id, SOURCE)) if store.sealer is not None else header
    await run_in_threadpool(_save_source, queue, job_id, sealed)


def _save_source(queue: Queue, job_id: str, sealed: bytes) -> None:
    job = Job.fetch(job_id, connection=queue.connection)
    job.meta[META] = sealed
    job.save_meta()  # the meta field alone (RQ's own writes of a job leave its meta as it is)


def has_source(job: Job) -> bool:
    """Whether the job explains a DICOM upload, so its JSON links the DICOM results (nothing opened or built)."""
    return META in job.meta


def _source(store: ExplainStore, job: Job) -> bytes | None:
    sealed = job.meta.get(META)
    if sealed is None:  # a job queued before the header moved into the meta
        return store.get_result(job.id, SOURCE)
    if store.sealer is None:
        return sealed
    try:
        return store.sealer.open(sealed, result_context(job.id, SOURCE))
    except SealError:
        return None


def dicom_objects(store: ExplainStore, queue: Queue, tenant: str, job_id: str) -> dict[str, bytes]:
    """``{name: DICOM bytes}`` of a finished job (heatmaps, panel, then the SR), built once."""
    job = fetch_job(queue, job_id, tenant)  # 404 for unknown, expired or another key's jobs
    if job_state(job) != "finished":
        raise NotFound(f"job {job_id!r} has not finished: its DICOM results exist once it has")
    index = store.get_result(job_id, INDEX)
    if index is not None:
        names = index.decode().split(",")
        objects = {n: store.get_result(job_id, object_file(n)) for n in names}
        if all(v is not None for v in objects.values()):
            return objects
    header = _source(store, job)
    if header is None:
        raise NotAcceptable(f"job {job_id!r} explained a JPEG/PNG (or its results expired): DICOM results exist "
                            "for DICOM input only")
    objects = _build(store, job_id, header, job.return_value())
    store.put_results(job_id, {**{object_file(n): data for n, data in objects.items()},
                               INDEX: ",".join(objects).encode()})
    return objects


def _build(store: ExplainStore, job_id: str, header: bytes, value: dict) -> dict[str, bytes]:
    from services.common import dicom_results as dr

    methods = list(value["methods"])
    pngs = {name: store.get_result(job_id, f"{name}.png") for name in (*methods, "panel")}
    missing = [n for n, data in pngs.items() if data is None]
    if missing:
        raise NotFound(f"job {job_id!r} has no {', '.join(missing)} any more: its results expired")
    model = value["model"]
    algorithm = dr.Algorithm(model["name"], model["version"],
                             (f"task={value['task']}", f"role={model['role']}"))
    try:
        built = dr.explain_objects(dr.read_header(header), dr.Finding.from_answer(value["task"], value["prediction"]),
                                   algorithm, pngs, target=value["target"]["label"])
    except dr.CannotWriteDicom as exc:
        raise CannotWriteDicomResult(str(exc)) from None
    return {name.removesuffix(".dcm"): data for name, data in built.items()}
