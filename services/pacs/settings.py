"""Bridge settings from the environment: the services' names as they are (INFERENCE_URL, EXPLAIN_URL,
DISEASEID_API_KEY, DISEASEID_DATA_DIR), the bridge's own as DISEASEID_PACS_*."""
from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Route(BaseModel):
    """Which series go to which task: the first route whose modality and description match wins."""

    task: str  # "tumor": each slice on its own; "dementia": the series as one subject's study
    modality: str = "MR"
    description: str = ""  # a regular expression searched in SeriesDescription; empty matches every series

    @field_validator("description")
    @classmethod
    def _compiles(cls, value: str) -> str:
        re.compile(value)
        return value

    def matches(self, modality: str, description: str) -> bool:
        return modality.upper() == self.modality.upper() and re.search(self.description, description) is not None


class PacsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISEASEID_PACS_", extra="ignore", validate_by_name=True)

    orthanc_url: str = "http://127.0.0.1:8042"
    orthanc_user: str | None = None
    orthanc_password: SecretStr | None = None
    inference_url: str = Field("http://127.0.0.1:8000", validation_alias="INFERENCE_URL")
    explain_url: str = Field("http://127.0.0.1:8001", validation_alias="EXPLAIN_URL")
    api_key: SecretStr | None = Field(None, validation_alias="DISEASEID_API_KEY")
    data_dir: Path = Field(Path(".data"), validation_alias="DISEASEID_DATA_DIR")

    # JSON, e.g. [{"task": "dementia", "description": "(?i)t1"}, {"task": "tumor"}]
    routes: list[Route] = [Route(task="tumor")]
    explain: bool = True  # heatmaps as DICOM too (tumour: every slice; dementia: the slice that weighed most)
    store: str = "auto"  # "stow" (DICOMweb STOW-RS), "rest" (Orthanc's POST /instances) or "auto" (STOW-RS if there)
    poll_s: float = Field(2.0, gt=0)
    max_slices: int = Field(64, ge=1)  # a series with more is recorded as failed (too_many_slices)
    attempts: int = Field(3, ge=1)  # a series whose services stay unavailable is failed after this many tries
    request_timeout_s: float = 60.0
    explain_timeout_s: float = 120.0
    state_file: Path | None = None  # default: <data dir>/pacs/state.json
    log_level: str = "INFO"

    @property
    def state_path(self) -> Path:
        return self.state_file or self.data_dir / "pacs" / "state.json"

    def route(self, modality: str, description: str) -> Route | None:
        return next((r for r in self.routes if r.matches(modality, description)), None)
