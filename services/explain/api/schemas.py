"""Response bodies of the explain API (they become its OpenAPI schema). A finished job's result is
``diseaseid.answers.ExplainResult``: its ``prediction`` has the shape ``/predict`` answers in."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from diseaseid.answers import ExplainResult

JobState = Literal["queued", "started", "finished", "failed"]


class JobAccepted(BaseModel):
    job_id: str
    status: JobState
    status_url: str
    deduplicated: bool = Field(description="an identical request within the TTL already made this job")


class ExplainRequestEcho(BaseModel):
    task: str
    model: str = Field(description="the role of the model asked for: student or teacher")
    methods: list[str]
    target: int | None = Field(description="the class index asked for; null means the predicted class")
    image_sha256: str


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
