"""Our answers as DICOM objects a PACS stores and a viewer shows: a TID 1500 Comprehensive SR for a prediction,
Secondary Capture images for the heatmaps and panel of an explanation, and an SR that references those.

Every object is built by highdicom from typed content items (nobody writes a tag by hand) and lands in the
study of its source images: same StudyInstanceUID, patient and study modules copied from the first source,
new Series and SOP Instance UIDs, the source instances referenced (image library, measurement group sources,
evidence). docs/dicom.md lists every field.

This lives in services/common, not in the ML core: the core works on pixel arrays and knows no DICOM header;
the inference and explain services both write these objects and share input handling here; highdicom is a
dependency of the services extra only.

Identifiers are derived, not random: each UID is ``2.25.<hash>`` of the source UIDs, the model name and
weights version and the kind of object (a name-based UUID, :func:`result_uid`). Asking twice for the
result of the same images by the same model gives the same UIDs, so a PACS that receives it again (a retry, a
bridge restarted between storing and recording) keeps one copy; the results of one source series by one model
share one output series per kind.
"""
from __future__ import annotations

import io
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from diseaseid.tasks import get_task

MANUFACTURER = "diseaseid"
RESEARCH_NOTICE = "RESEARCH USE ONLY, not for diagnosis"
# A local coding scheme (PS3.16 section 8: designators starting "99") for our classes and outcomes, declared
# in each object's Coding Scheme Identification Sequence.
SCHEME = "99DISEASEID"
SCHEME_NAME = "diseaseid classes and outcomes"
MEDIA_TYPE = "application/dicom"

# Series numbers of what we write, far from a scanner's (1, 2, ...), one per kind of object.
SERIES_NUMBERS = {"predict": 9101, "explain-images": 9102, "explain-sr": 9103}

PROBABILITY = hd.sr.CodedConcept("122157", "DCM", "Probability")
OUTCOME = hd.sr.CodedConcept("outcome", SCHEME, "Outcome of the analysis")
# One code per outcome of diseaseid.outcomes. No DICOM (DCM, CID 7011 "Rejected for Quality Reasons"), SNOMED
# CT or LOINC concept says "a brain MRI, but not the kind this model reads" (the nearest, e.g. (111235, DCM,
# "Unusable - Quality renders image unusable") or (128621, DCM, "Inappropriate for the indications"), speak of
# image quality or of an order), so both refusals are codes of our declared local scheme.
OUTCOMES = {
    "diagnosis": hd.sr.CodedConcept("diagnosis", SCHEME, "Diagnosis (model answer, research use only)"),
    "not_a_brain_mri": hd.sr.CodedConcept("not-brain-mri", SCHEME, "Not a brain MRI slice: no diagnosis"),
    "wrong_task": hd.sr.CodedConcept("wrong-task", SCHEME, "Brain MRI of a kind this task does not read: no "
                                                           "diagnosis"),
}
# With ``wrong-task``: the task whose kind of slice the image resembles (the JSON ``suited_task``).
SUITED_TASK = hd.sr.CodedConcept("suited-task", SCHEME, "Task whose kind of slice the image resembles")
ATTENTION = hd.sr.CodedConcept("attention", SCHEME, "Weight of the slice in the subject-level answer")
IMPAIRED = hd.sr.CodedConcept("p-impaired", SCHEME, "Probability of any cognitive impairment")

# Type 2 attributes of the patient and study modules: an empty value where the source lacks them (the
# objects must still carry them), never invented ones.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")
# Type 1 in the source: without them a result cannot join the study or reference the image.
_REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


class CannotWriteDicom(ValueError):
    """The sources do not allow a DICOM result (missing UIDs, several studies or patients)."""


@dataclass(frozen=True)
class Finding:
    """One answer as the API gives it: the conclusion of a slice or of a subject."""

    task: str
    outcome: str  # "diagnosis" | "not_a_brain_mri" | "wrong_task" (diseaseid.outcomes)
    label: str | None  # None without a diagnosis
    probabilities: Mapping[str, float]
    impaired_probability: float | None = None  # dementia's screening answer
    suited_task: str | None = None  # wrong_task: the task whose kind of slice it is

    @classmethod
    def from_answer(cls, task: str, conclusion: Mapping) -> Finding:
        """From a ``conclusion`` of the JSON answer (/predict, /predict/study's subject or a slice) or an
        explain result's ``prediction``: the same keys for what is used here."""
        screening = conclusion.get("screening") or {}
        return cls(task=task, outcome=str(conclusion.get("outcome") or "diagnosis"), label=conclusion.get("label"),
                   probabilities={str(k): float(v) for k, v in conclusion["probabilities"].items()},
                   impaired_probability=screening.get("impaired_probability"),
                   suited_task=conclusion.get("suited_task"))

    @property
    def is_diagnosis(self) -> bool:
        return self.outcome == "diagnosis" and self.label is not None


@dataclass(frozen=True)
class Algorithm:
    """The model that answered: its name and weights version name the algorithm and the device."""

    name: str  # e.g. "tumor/student:lite0_stage5"
    version: str  # first 12 hex digits of the weights' SHA-256
    parameters: tuple[str, ...] = ()


def class_concept(task: str, label: str) -> hd.sr.CodedConcept:
    """A class of a task as a coded concept of our scheme: value ``<task>.<class index>``, the English name."""
    t = get_task(task)
    index = t.classes.index(label)
    return hd.sr.CodedConcept(f"{task}.{index}", SCHEME, t.display(index, "en"))


def outcome_concept(outcome: str) -> hd.sr.CodedConcept:
    """The coded outcome; an outcome without a code is refused rather than written as another one."""
    try:
        return OUTCOMES[outcome]
    except KeyError:
        raise CannotWriteDicom(f"no DICOM code for the outcome {outcome[:40]!r}") from None


def task_concept(task: str) -> hd.sr.CodedConcept:
    """A task as a coded concept of our scheme: value ``task.<name>``, its English title."""
    return hd.sr.CodedConcept(f"task.{task}", SCHEME, get_task(task).title("en")[:64])


def result_uid(*parts: object) -> str:
    """A UID derived from ``parts``: ``2.25.`` and a name-based (SHA-1, version 5) UUID as an integer
    (ISO/IEC 9834-8, PS3.5 B.2): the same parts, the same UID; different parts, a different one."""
    name = "\x1f".join(str(p) for p in ("diseaseid", *parts))
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


# -- reading sources ---------------------------------------------------------------------------------------
def read_header(data: bytes, *, force: bool = False) -> Dataset:
    """The DICOM header of an upload, pixel data left out (what a result needs of its source)."""
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=force)


def header_bytes(ds: Dataset) -> bytes:
    """A header as a small DICOM file (no pixels), e.g. to hand to the explain worker with a job."""
    out = Dataset()
    out.update({el.tag: el for el in ds if el.keyword not in ("PixelData", "FloatPixelData",
                                                              "DoubleFloatPixelData")})
    out.file_meta = pydicom.dataset.FileMetaDataset()  # a new one: the source's stays as it was
    out.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    out.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "")
    out.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
    buf = io.BytesIO()
    out.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _prepared(sources: Sequence[Dataset]) -> list[Dataset]:
    """Copies of the source headers with the Type 2 attributes present; refuses what cannot be referenced."""
    if not sources:
        raise CannotWriteDicom("no source image")
    prepared = []
    for i, ds in enumerate(sources):
        missing = [k for k in _REQUIRED if not str(ds.get(k, "") or "").strip()]
        if missing:
            raise CannotWriteDicom(f"file {i}: the DICOM header has no {', '.join(missing)}; a DICOM result "
                                   "must reference its source image in its study")
        copy = Dataset()
        copy.update({el.tag: el for el in ds if el.keyword not in ("PixelData", "FloatPixelData",
                                                                  "DoubleFloatPixelData")})
        for keyword in _TYPE2:
            if keyword not in copy or copy[keyword].value is None:
                setattr(copy, keyword, "")
        prepared.append(copy)
    for keyword, what in (("StudyInstanceUID", "studies"), ("PatientID", "patients")):
        if len({str(ds.get(keyword, "")) for ds in prepared}) > 1:
            raise CannotWriteDicom(f"the DICOM files belong to different {what}; one result goes into one study")
    return prepared


# -- the SR ------------------------------------------------------------------------------------------------
def _device_context(algorithm: Algorithm) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=result_uid("device", algorithm.name, algorithm.version),
        name=f"{MANUFACTURER} {algorithm.name}"[:64],
        manufacturer_name=MANUFACTURER,
        model_name=algorithm.name[:64],
        serial_number=algorithm.version,
    )
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))


def _group(finding: Finding, algorithm: Algorithm, sources: Sequence[Dataset], tracking: str,
           tracking_uid: str, extra: Sequence[hd.sr.Measurement] = ()) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    measurements: list[hd.sr.Measurement] = []
    finding_type = None
    if finding.is_diagnosis:
        finding_type = class_concept(finding.task, finding.label)
        measurements.append(hd.sr.Measurement(name=PROBABILITY, value=finding.probabilities[finding.label],
                                              unit=codes.UCUM.NoUnits))
        # Every class's probability, each named by its class (the finding's own is also the one above).
        for label, p in finding.probabilities.items():
            concept = class_concept(finding.task, label)
            measurements.append(hd.sr.Measurement(
                name=hd.sr.CodedConcept(f"p.{concept.value}", SCHEME, f"Probability of {concept.meaning}"[:64]),
                value=p, unit=codes.UCUM.NoUnits))
        if finding.impaired_probability is not None:
            measurements.append(hd.sr.Measurement(name=IMPAIRED, value=finding.impaired_probability,
                                                  unit=codes.UCUM.NoUnits))
    measurements.extend(extra)
    evaluations = [hd.sr.QualitativeEvaluation(OUTCOME, outcome_concept(finding.outcome))]
    if finding.outcome == "wrong_task" and finding.suited_task:
        evaluations.append(hd.sr.QualitativeEvaluation(SUITED_TASK, task_concept(finding.suited_task)))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=tracking[:64]),
        finding_type=finding_type,
        algorithm_id=hd.sr.AlgorithmIdentification(name=algorithm.name, version=algorithm.version,
                                                   parameters=list(algorithm.parameters) or None,
                                                   manufacturer=MANUFACTURER),
        finding_sites=[hd.sr.FindingSite(codes.SCT.Brain)],
        measurements=measurements or None,
        qualitative_evaluations=evaluations,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in sources],
    )


def prediction_sr(sources: Sequence[Dataset], finding: Finding, algorithm: Algorithm, *,
                  used: Sequence[bool] | None = None, slices: Sequence[Finding] | None = None,
                  attention: Sequence[float] | None = None, kind: str = "predict",
                  images: Sequence[Dataset] = ()) -> hd.sr.ComprehensiveSR:
    """The TID 1500 measurement report of one answer.

    ``sources``: the input headers in the order sent. The first measurement group is the answer (for a study,
    the subject's), its sources the slices it rests on (``used``). For a study, ``slices`` adds one group per
    slice with its own answer and its ``attention`` weight. ``images``: our own Secondary Capture images
    (heatmaps) to list in the image library and evidence beside the sources."""
    prepared = _prepared(sources)
    used = list(used) if used is not None else [True] * len(prepared)
    basis = [ds for ds, u in zip(prepared, used, strict=True) if u] or prepared
    uids = sorted(str(ds.SOPInstanceUID) for ds in prepared)
    series = sorted({str(ds.SeriesInstanceUID) for ds in prepared})
    groups = [_group(finding, algorithm, basis, f"{MANUFACTURER} {finding.task} finding",
                     result_uid(kind, "finding", *uids, algorithm.name, algorithm.version))]
    for i, (ds, slice_finding) in enumerate(zip(prepared, slices or (), strict=False)):
        extra = []
        if attention is not None:
            extra.append(hd.sr.Measurement(name=ATTENTION, value=float(attention[i]), unit=codes.UCUM.NoUnits))
        groups.append(_group(slice_finding, algorithm, [ds], f"{MANUFACTURER} {finding.task} slice {i}",
                             result_uid(kind, "slice", ds.SOPInstanceUID, algorithm.name, algorithm.version),
                             extra))
    report = hd.sr.MeasurementReport(
        observation_context=_device_context(algorithm),
        procedure_reported=codes.LN.BrainMRI,
        imaging_measurements=groups,
        referenced_images=[*prepared, *images],
    )
    try:  # one slice: the SR sorts beside its source; a study's is the series' first
        number = int(prepared[0].get("InstanceNumber") or 1) if len(prepared) == 1 else 1
    except (TypeError, ValueError):
        number = 1
    return hd.sr.ComprehensiveSR(
        evidence=[*prepared, *images],
        content=report,
        series_instance_uid=result_uid(kind, "series", *series, algorithm.name, algorithm.version),
        series_number=SERIES_NUMBERS.get(kind, SERIES_NUMBERS["predict"]),
        sop_instance_uid=result_uid(kind, "sr", *uids, algorithm.name, algorithm.version),
        instance_number=max(number, 1),
        manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm.name[:64],
        software_versions=algorithm.version,
        series_description=f"{MANUFACTURER} AI result, {RESEARCH_NOTICE}"[:64],
        content_qualification="RESEARCH",
        coding_schemes=[CodingSchemeIdentificationItem(designator=SCHEME, name=SCHEME_NAME)],
        is_complete=True,
    )


# -- Secondary Capture images ------------------------------------------------------------------------------
_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))  # +x, -x; +y, -y; +z, -z in the patient coordinate system


def _orientation_letter(cosines: Sequence[float]) -> str:
    """A direction cosine vector as the PatientOrientation letter of its largest component (PS3.3
    C.7.6.1.1.1 allows more letters for oblique directions; the closest axis is what a viewer's marker shows)."""
    k = max(range(3), key=lambda i: abs(cosines[i]))
    return _LETTERS[k][0 if cosines[k] > 0 else 1]


def patient_orientation(ds: Dataset) -> tuple[str, str] | None:
    """Row and column directions of the source image as letters (the heatmaps keep them: the model's input
    is a crop and a scaling of the slice, never a rotation); None when the source does not say."""
    po = ds.get("PatientOrientation")
    if po is not None and len(po) == 2 and all(len(str(v)) == 1 for v in po):
        return str(po[0]), str(po[1])
    iop = ds.get("ImageOrientationPatient")
    try:
        values = [float(v) for v in iop] if iop is not None else []
    except (TypeError, ValueError):
        values = []
    if len(values) != 6:
        return None
    return _orientation_letter(values[:3]), _orientation_letter(values[3:])


def png_rgb(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def secondary_capture(source: Dataset, rgb: np.ndarray, *, name: str, description: str, algorithm: Algorithm,
                      number: int, key: Sequence[str]) -> hd.sc.SCImage:
    """One picture (an overlay or the panel) as a Secondary Capture image in the source's study."""
    (src,) = _prepared([source])
    orientation = patient_orientation(src)
    sc = hd.sc.SCImage.from_ref_dataset(
        src,
        pixel_array=np.ascontiguousarray(rgb, dtype=np.uint8),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        # A source that does not say: any letters would be a guess; highdicom needs a value, replaced below.
        patient_orientation=orientation or ("L", "P"),
        series_instance_uid=result_uid("explain-images", "series", src.SeriesInstanceUID, *key),
        series_number=SERIES_NUMBERS["explain-images"],
        sop_instance_uid=result_uid("explain-images", name, src.SOPInstanceUID, *key),
        instance_number=number,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm.name[:64],
        software_versions=algorithm.version,
        series_description=f"{MANUFACTURER} heatmaps, {RESEARCH_NOTICE}"[:64],
        content_qualification="RESEARCH",
        transfer_syntax_uid=pydicom.uid.ExplicitVRLittleEndian,
    )
    if orientation is None:
        sc.PatientOrientation = ""  # Type 2: present and empty, the honest value
    if "Laterality" not in sc:
        sc.Laterality = ""  # Type 2C (General Series): the brain is no paired structure, so empty
    return sc


# -- an explanation as DICOM -------------------------------------------------------------------------------
EXPLAIN_NAMES = {"gradcam": "Grad-CAM heatmap over the slice", "lrp": "LRP relevance over the slice",
                 "panel": "the slice beside each heatmap, titled with the prediction"}


def explain_objects(source: Dataset, finding: Finding, algorithm: Algorithm, pngs: Mapping[str, bytes],
                    *, target: str | None = None) -> dict[str, bytes]:
    """Secondary Capture images of each ``pngs`` picture (``gradcam``, ``lrp``, ``panel``) and an SR with the
    explained prediction that references them: ``{"gradcam.dcm": ..., "panel.dcm": ..., "sr.dcm": ...}``."""
    key = (algorithm.name, algorithm.version, target or "")
    images = {}
    for number, name in enumerate((n for n in EXPLAIN_NAMES if n in pngs), start=1):
        images[name] = secondary_capture(source, png_rgb(pngs[name]), name=name, description=EXPLAIN_NAMES[name],
                                         algorithm=algorithm, number=number, key=key)
    params = (*algorithm.parameters, f"methods={','.join(n for n in images if n != 'panel')}")
    if target is not None:
        params += (f"explained class={target}",)
    sr = prediction_sr([source], finding, Algorithm(algorithm.name, algorithm.version, params), kind="explain-sr",
                       images=list(images.values()))
    return {**{f"{name}.dcm": dicom_bytes(ds) for name, ds in images.items()}, "sr.dcm": dicom_bytes(sr)}


# -- bytes on the wire -------------------------------------------------------------------------------------
def dicom_bytes(ds: Dataset) -> bytes:
    """A DICOM file (preamble, file meta) as a PACS and ``dciodvfy`` expect it."""
    if "SeriesDate" not in ds and "ContentDate" in ds:
        # General Series, Type 3: viewers and PACS (Orthanc Explorer) sort and group a study's series by date;
        # without one our series stand apart, under "?". The object's own creation time is the honest value.
        ds.SeriesDate, ds.SeriesTime = ds.ContentDate, ds.ContentTime
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def multipart_related(parts: Sequence[bytes], boundary: str | None = None) -> tuple[bytes, str]:
    """DICOM files as one ``multipart/related; type="application/dicom"`` body (what STOW-RS takes and
    WADO-RS gives): ``(body, content type)``."""
    boundary = boundary or f"diseaseid-{uuid.uuid4().hex}"
    chunks = []
    for part in parts:
        chunks += [f"--{boundary}\r\nContent-Type: {MEDIA_TYPE}\r\n\r\n".encode(), part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{MEDIA_TYPE}"; boundary={boundary}'


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The parts of a ``multipart/related`` body (the inverse of :func:`multipart_related`; headers dropped)."""
    params = dict(p.strip().split("=", 1) for p in content_type.split(";")[1:] if "=" in p)
    boundary = params.get("boundary", "").strip('"')
    if not boundary:
        raise ValueError("multipart body without a boundary")
    delimiter = b"--" + boundary.encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("multipart part without headers")
        parts.append(payload.removesuffix(b"\r\n"))
    return parts
