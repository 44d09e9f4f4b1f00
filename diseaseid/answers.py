"""The answers clients get, as pydantic models: one slice (``POST /predict``), one study (``POST /predict/study``)
and one finished explanation (``GET /explain/{id}``). Defined here once; the services declare them as their
response models (so the OpenAPI schema says what a client gets), the explain worker returns
:class:`ExplainJobResult`, and the clients in this repository (the bot, the web page, the PACS
bridge) read answers with them.

One shape for a prediction, the one ``/predict`` has always documented: the out-of-distribution verdict nested as
``ood{flag, score, reasons, detector}`` beside ``outcome``, ``label``, ``probabilities`` and the rest
(:class:`Conclusion`). :meth:`Conclusion.of` is the one serializer from the core's
``diseaseid.serving.Prediction`` (whose flat ``ood``, ``ood_score``, ``ood_reasons`` and ``ood_detector`` become
``ood.flag``, ``ood.score``, ``ood.reasons`` and ``ood.detector``); ``Prediction.to_dict()`` is its JSON form.
The explain result's ``prediction`` has this shape too (it was the flat one before).

Light to import (pydantic only, no torch): services, clients and tests read it without loading a model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from diseaseid.outcomes import DIAGNOSIS, Outcome

if TYPE_CHECKING:
    from diseaseid.serving.predictor import Prediction

_PROBS = {"glioma": 0.912, "meningioma": 0.041, "notumor": 0.012, "pituitary": 0.035}
_MODEL = {"role": "student", "name": "tumor/student:lite0_stage5", "arch": "lite0_stage5", "version": "8261307019b1"}
_OOD = {"flag": False, "score": 41.3, "reasons": [], "detector": "tumor/student:lite0_stage5"}
_INPUT = {"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "format": "jpeg",
          "size_bytes": 23816, "width": 512, "height": 512}
_SLICE = {"index": 0, "outcome": "diagnosis", "used": True, "label": "NonDemented", "label_index": 0,
          "display_en": "Non-demented", "display_ru": "Деменции нет",
          "probabilities": {"NonDemented": 0.78, "VeryMildDemented": 0.18, "MildDemented": 0.03,
                            "ModerateDemented": 0.01}, "ood": _OOD,
          "input": _INPUT}


class ModelRef(BaseModel):
    role: str = Field(description="student (small, fast) or teacher (larger); the default is per task, see "
                                  "GET /models")
    name: str
    arch: str
    version: str = Field(description="First 12 hex digits of the weights' SHA-256")


class Ood(BaseModel):
    flag: bool = Field(description="True when the input does not look like a brain MRI slice of this task: then "
                                   "there is no diagnosis (`outcome` not_a_brain_mri or wrong_task, `label` null)")
    score: float = Field(description="How unlike the task's MRI slices the detector model finds the image, "
                                     "higher is less familiar: the Mahalanobis distance of its features "
                                     "(docs/ood.md), or its energy score where the task ships no statistics")
    reasons: list[str]
    detector: str | None = Field(None, description="The model whose features decide, the same for every "
                                                   "model of a task (null: image checks only)")


class InputInfo(BaseModel):
    sha256: str
    format: str = Field(description="jpeg, png or dicom, detected from the bytes")
    size_bytes: int
    width: int
    height: int


class Timing(BaseModel):
    decode: float = Field(description="Decoding and resizing, ms")
    inference: float = Field(description="Forward pass, calibration and OOD checks, ms")
    total: float = Field(description="Whole request inside the server, ms")


class Screening(BaseModel):
    impaired_probability: float = Field(description="Probability of any stage of impairment (1 - P(normal))")
    impaired: bool = Field(description="impaired_probability >= 0.5")
    display_en: str
    display_ru: str


class Conclusion(BaseModel):
    """One prediction: of a slice, or of a study's subject. The shape every answer carries a prediction in."""

    outcome: Outcome = Field(DIAGNOSIS, description=(
        "`diagnosis`, or no diagnosis when the OOD check flags the input: `wrong_task` when it looks like a brain "
        "MRI slice of the kind another task reads (named in `suited_task`; e.g. a tumour slice sent with "
        "task=dementia), else `not_a_brain_mri`. Without a diagnosis `label`, `label_index` and `screening` are "
        "null and `display_*` say what it is; the probabilities stay for tools that ask, and are no diagnosis"))
    suited_task: str | None = Field(None, description="`wrong_task`: the task whose slices the input looks like "
                                                      "(send it there); null otherwise")
    label: str | None = Field(description="The suspected class; null without a diagnosis")
    label_index: int | None
    display_en: str
    display_ru: str
    probabilities: dict[str, float] = Field(description="Calibrated (temperature-scaled) class probabilities")
    ood: Ood
    screening: Screening | None = Field(None, description="Tasks with a screening answer (dementia): "
                                                          "cognitively normal vs impaired")

    @classmethod
    def of(cls, p: Prediction) -> Conclusion:
        """The answer for one of the core's predictions (the only place its fields are mapped to this shape)."""
        return cls(outcome=p.outcome, suited_task=p.suited_task, label=p.label, label_index=p.label_index,
                   display_en=p.display_en, display_ru=p.display_ru, probabilities=p.probabilities,
                   ood=Ood(flag=p.ood, score=p.ood_score, reasons=p.ood_reasons, detector=p.ood_detector),
                   screening=p.screening)

    @property
    def is_diagnosis(self) -> bool:
        return self.outcome == DIAGNOSIS and self.label is not None


class PredictResponse(Conclusion):
    """``POST /predict``: one slice."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "task": "tumor", "outcome": "diagnosis", "label": "glioma", "label_index": 0, "display_en": "Glioma",
        "display_ru": "Глиома",
        "probabilities": _PROBS, "ood": _OOD, "model": _MODEL, "input": _INPUT,
        "timing_ms": {"decode": 1.4, "inference": 3.2, "total": 5.1}}]})

    task: str
    model: ModelRef
    input: InputInfo
    timing_ms: Timing


class SliceResult(Conclusion):
    index: int = Field(description="Position of the file in the request")
    used: bool = Field(True, description="Whether the subject-level result rests on this slice (false: flagged "
                                         "as not brain MRI and left out)")
    input: InputInfo


class AggregationModel(BaseModel):
    name: str
    version: str


class Aggregation(BaseModel):
    method: str = Field(description="the subject-level head over its slice model's embeddings "
                                    "(`pooled_slices`, `pooled_linear`, `pooled_ordinal` or `attention_mil`; "
                                    "see its card) or `mean` (mean of the slices' probabilities)")
    model: AggregationModel | None = None
    attention: list[float] | None = Field(None, description="Weight of each slice in the subject-level "
                                                            "answer, in the order sent (sums to 1; 0 for "
                                                            "excluded slices; null when every slice is excluded)")


class StudyWarningInfo(BaseModel):
    code: str = Field(description="`mixed_sizes` (one shape, different sizes), `unlike_neighbours` (two "
                                  "neighbours less alike than slices of one subject are), `sudden_change` (one "
                                  "neighbour pair far less alike than the study's others), `out_of_order` (slices "
                                  "i and i+2 more alike than either is to i+1); docs/studies.md")
    message: str
    slices: list[int] = Field(description="The slices concerned, by position in the request")


class SubjectModelRef(ModelRef):
    role: str = Field(description="`mil`: the task's subject-level head (see `aggregation`); else the slice model's "
                                  "role (`student` or `teacher`), whose probabilities were averaged")
    reads: str | None = Field(None, description="`mil`: the slice model whose embeddings the head reads (the "
                                                "task's teacher), whichever model answered the slices")


class StudyResponse(BaseModel):
    """``POST /predict/study``: the slices of one subject and one subject-level result."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "task": "dementia", "model": {"role": "mil", "name": "dementia/mil:attention_mil", "arch": "attention_mil",
                                      "version": "3f2a9c1b7d0e", "reads": "dementia/teacher:lite0"},
        "slice_model": {**_MODEL, "name": "dementia/student:convnet1", "arch": "convnet1",
                        "version": "1f393f82d84b"}, "n_slices": 2,
        "n_used": 2, "excluded": [], "warnings": [],
        "subject": {"outcome": "diagnosis", "label": "NonDemented", "label_index": 0,
                    "display_en": "Non-demented", "display_ru": "Деменции нет",
                    "probabilities": {"NonDemented": 0.81, "VeryMildDemented": 0.15, "MildDemented": 0.03,
                                      "ModerateDemented": 0.01},
                    "ood": _OOD},
        "aggregation": {"method": "attention_mil", "model": {"name": "dementia/mil:attention_mil",
                                                             "version": "3f2a9c1b7d0e"},
                        "attention": [0.62, 0.38]},
        "slices": [_SLICE, {**_SLICE, "index": 1}],
        "timing_ms": {"decode": 3.0, "inference": 7.9, "total": 11.6}}]})

    task: str
    model: SubjectModelRef = Field(description="What produced the subject-level answer: the subject-level head "
                                               "(`role` mil), or the slice model when its probabilities were "
                                               "averaged (`aggregate=mean`, no head, or every slice flagged)")
    slice_model: ModelRef = Field(description="The model that answered each slice (`slices`)")
    n_slices: int
    n_used: int = Field(description="Slices the subject-level result rests on: those not flagged as OOD")
    excluded: list[int] = Field(description="Indices of the slices flagged as not brain MRI and left out of the "
                                            "subject-level result (each is reported in `slices`)")
    warnings: list[StudyWarningInfo] = Field(default_factory=list, description=(
        "Signs that the slices may not be one subject's stack in order (empty when none): the answer still "
        "comes, read it with care. What is certain is refused with 422 `mixed_*` instead"))
    subject: Conclusion = Field(description="Subject-level result from the slices not flagged (see `aggregation` "
                                            "for how it was reached); no diagnosis when every slice is flagged")
    aggregation: Aggregation
    slices: list[SliceResult]
    timing_ms: Timing


class ExplainModelRef(BaseModel):
    role: str = Field(description="student or teacher")
    name: str
    version: str = Field(description="First 12 hex digits of the weights' SHA-256")
    device: str = Field(description="Where the worker ran it: cpu, cuda:0, ...")


class ExplainedClass(BaseModel):
    index: int | None
    label: str | None
    display_en: str | None
    display_ru: str | None


class MapSummary(BaseModel):
    min: float
    max: float
    render_ms: float = Field(description="time to draw this method's overlay")


class ExplainJobResult(BaseModel):
    """What an explain worker returns for a finished job (RQ keeps it, as a dict, with the job): the result
    ``GET /explain/{id}`` shows, before the API adds the URLs of its files."""

    outcome: Outcome = Field(
        DIAGNOSIS, description="`not_a_brain_mri`, or `wrong_task` (a brain MRI slice of the kind another task "
                               "reads: `prediction.suited_task`), when the OOD check flags the image: then there "
                               "is no diagnosis (`prediction.label` and every field of `target` are null) and the "
                               "maps only show what drives the model's score")
    notice: str | None = Field(None, description="What to tell a reader first, when there is no diagnosis")
    task: str
    model: ExplainModelRef
    prediction: Conclusion = Field(description="The model's prediction of the slice, in the shape /predict "
                                               "gives it")
    target: ExplainedClass = Field(description="the class the maps explain; all null when there is no diagnosis "
                                               "(no class is named for such an image)")
    methods: dict[str, MapSummary]
    timing_ms: dict[str, float] = Field(description="worker time: predict, explain (all maps), render, total")


class MethodResult(MapSummary):
    png_url: str = Field(description="the heatmap over the slice")
    npy_url: str = Field(description="the raw 224 x 224 float32 map (numpy .npy)")


class DicomResults(BaseModel):
    """Where an explanation of a DICOM slice is as DICOM objects, in the slice's study (docs/dicom.md)."""

    url: str = Field(description='every object as one `multipart/related; type="application/dicom"` body, images '
                                 "first (what STOW-RS takes)")
    objects: dict[str, str] = Field(description="each object by name: `gradcam`, `lrp` (Secondary Capture images "
                                                "of the methods computed), `panel`, and `sr` (an SR with the "
                                                "explained prediction, referencing them and the slice)")


class ExplainResult(ExplainJobResult):
    """``GET /explain/{id}`` of a finished job: the worker's result with where to fetch its files."""

    methods: dict[str, MethodResult]
    panel_url: str
    dicom: DicomResults | None = Field(None, description="For a DICOM input: where its results are as DICOM "
                                                         "objects (built on first request); null for JPEG/PNG")

    @classmethod
    def with_urls(cls, job: ExplainJobResult, root: str, *, dicom: bool = False) -> ExplainResult:
        """``root``: the job's URL (``.../explain/{id}``); each file lies under it. ``dicom``: the input was
        DICOM, so the results exist as DICOM objects too."""
        methods = {name: MethodResult(png_url=f"{root}/{name}.png", npy_url=f"{root}/{name}.npy",
                                      **summary.model_dump())
                   for name, summary in job.methods.items()}
        links = None
        if dicom:
            names = (*job.methods, "panel", "sr")
            links = DicomResults(url=f"{root}/dicom", objects={n: f"{root}/dicom/{n}.dcm" for n in names})
        return cls(**{**dict(job), "methods": methods, "panel_url": f"{root}/panel.png", "dicom": links})


def example(model: type[BaseModel]) -> dict[str, Any]:
    """The first example in a model's OpenAPI schema (what the docs show; tests build bodies from it)."""
    return model.model_config["json_schema_extra"]["examples"][0]
