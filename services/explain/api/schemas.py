"""Response bodies of the explain API (they become its OpenAPI schema)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from diseaseid.outcomes import OUTCOMES

JobState = Literal["queued", "started", "finished", "failed"]


class JobAccepted(BaseModel):
    job_id: str
    status: JobState
    status_url: str
    deduplicated: bool = Field(description="an identical request within the TTL already made this job")


class ExplainRequestEcho(BaseModel):
    task: str
    model: str
    methods: list[str]
    target: int | None = Field(description="the class index asked for; null means the predicted class")
    image_sha256: str


class MethodResult(BaseModel):
    png_url: str = Field(description="the heatmap over the slice")
    npy_url: str = Field(description="the raw 224 x 224 float32 map (numpy .npy)")
    min: float
    max: float
    render_ms: float = Field(description="time to draw this method's overlay")


class ExplainResult(BaseModel):
    outcome: Literal[OUTCOMES] = Field(
        "diagnosis", description="`not_a_brain_mri`, or `wrong_task` (a brain MRI slice of the kind another task "
                                 "reads: `prediction.suited_task`), when the OOD check flags the image: then there "
                                 "is no diagnosis (`prediction.label` and every field of `target` are null) and the "
                                 "maps only show what drives the model's score")
    notice: str | None = Field(None, description="What to tell a reader first, when there is no diagnosis")
    model: dict
    prediction: dict = Field(description="the model's prediction: outcome, label (null when not a brain MRI "
                                         "slice), probabilities, OOD flag and reasons")
    target: dict = Field(description="the class the maps explain: index, label, display_en, display_ru; all null "
                                     "when there is no diagnosis (no class is named for such an image)")
    methods: dict[str, MethodResult]
    panel_url: str
    timing_ms: dict[str, float] = Field(description="worker time: predict, explain (all maps), render, total")


class JobError(BaseModel):
    code: str
    message: str


class JobView(BaseModel):
    job_id: str
    status: JobState
    queue_position: int | None = Field(None, description="0 is next; only while queued")
    request: ExplainRequestEcho
    enqueued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    result: ExplainResult | None = None
    error: JobError | None = None
