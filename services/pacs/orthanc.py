"""A thin client of Orthanc's REST API and DICOMweb plugin: the change feed, a series and its files, storing."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import httpx

from services.common.dicom_results import MEDIA_TYPE, multipart_related

log = logging.getLogger(__name__)

FAILED_SOP_SEQUENCE = "00081198"  # STOW-RS response: instances the server did not store
FAILURE_REASON = "00081197"


class OrthancError(Exception):
    """Orthanc did not answer, or refused what we stored."""


@dataclass(frozen=True)
class Instance:
    id: str  # Orthanc's id
    sop_uid: str
    order: tuple  # stack position: along the slice normal where the geometry says, else InstanceNumber


@dataclass(frozen=True)
class Series:
    id: str
    uid: str
    modality: str
    description: str
    study_id: str
    instances: list[Instance]  # in stack order, lowest first


def _floats(text: str | None) -> list[float]:
    try:
        return [float(v) for v in (text or "").split("\\") if v.strip()]
    except ValueError:
        return []


def _stack_order(tags: dict, index: int) -> tuple:
    iop, ipp = _floats(tags.get("ImageOrientationPatient")), _floats(tags.get("ImagePositionPatient"))
    try:
        number = int(tags.get("InstanceNumber") or 0)
    except ValueError:
        number = 0
    if len(iop) == 6 and len(ipp) == 3:
        r, c = iop[:3], iop[3:]
        normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
        return (0, sum(n * p for n, p in zip(normal, ipp, strict=True)), number, index)
    return (1, 0.0, number, index)


class OrthancClient:
    def __init__(self, url: str, *, auth: tuple[str, str] | None = None, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self._http = httpx.Client(auth=auth, timeout=httpx.Timeout(timeout_s, connect=5.0), transport=transport)

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.get(self.url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise OrthancError(f"GET {path}: {type(exc).__name__}") from exc
        if not response.is_success:
            raise OrthancError(f"GET {path}: HTTP {response.status_code}")
        return response

    def identity(self) -> str:
        """Which Orthanc this is (its Name), so a state file is not applied to another server's feed."""
        return str(self._get("/system").json().get("Name", ""))

    def has_dicomweb(self) -> bool:
        return "dicom-web" in self._get("/plugins").json()

    def changes(self, since: int, limit: int = 100) -> tuple[list[dict], int, bool]:
        """``(changes after since, last sequence number, done)``."""
        body = self._get("/changes", params={"since": since, "limit": limit}).json()
        return body.get("Changes", []), int(body.get("Last", since)), bool(body.get("Done", True))

    def last_change(self) -> int:
        return int(self._get("/changes", params={"last": ""}).json().get("Last", 0))

    def series(self, series_id: str) -> Series:
        info = self._get(f"/series/{series_id}").json()
        tags = info.get("MainDicomTags", {})
        items = self._get(f"/series/{series_id}/instances").json()
        instances = [Instance(item["ID"], str(item.get("MainDicomTags", {}).get("SOPInstanceUID", "")),
                              _stack_order(item.get("MainDicomTags", {}), int(item.get("IndexInSeries") or 0)))
                     for item in items]
        return Series(series_id, str(tags.get("SeriesInstanceUID", "")), str(tags.get("Modality", "")),
                      str(tags.get("SeriesDescription", "")), str(info.get("ParentStudy", "")),
                      sorted(instances, key=lambda i: i.order))

    def file(self, instance_id: str) -> bytes:
        return self._get(f"/instances/{instance_id}/file").content

    # -- storing -------------------------------------------------------------------------------------------
    def stow(self, files: list[bytes]) -> None:
        """Store DICOM files by DICOMweb STOW-RS (one request); OrthancError unless every one was stored."""
        body, content_type = multipart_related(files)
        try:
            response = self._http.post(f"{self.url}/dicom-web/studies", content=body,
                                       headers={"Content-Type": content_type, "Accept": "application/dicom+json"})
        except httpx.HTTPError as exc:
            raise OrthancError(f"STOW-RS: {type(exc).__name__}") from exc
        if response.status_code not in (200, 202):
            raise OrthancError(f"STOW-RS: HTTP {response.status_code}")
        try:
            failed = response.json().get(FAILED_SOP_SEQUENCE, {}).get("Value", [])
        except (ValueError, AttributeError):
            failed = []
        if failed:
            reasons = sorted({str(f.get(FAILURE_REASON, {}).get("Value", ["?"])[0]) for f in failed})
            raise OrthancError(f"STOW-RS: {len(failed)} of {len(files)} instances not stored (reasons {reasons})")

    def post_instances(self, files: list[bytes]) -> None:
        """Store DICOM files through Orthanc's own REST API (POST /instances), for an Orthanc without DICOMweb."""
        for data in files:
            try:
                response = self._http.post(f"{self.url}/instances", content=data,
                                           headers={"Content-Type": MEDIA_TYPE})
            except httpx.HTTPError as exc:
                raise OrthancError(f"POST /instances: {type(exc).__name__}") from exc
            if not response.is_success:
                raise OrthancError(f"POST /instances: HTTP {response.status_code}")
            status = json.loads(response.content or b"{}").get("Status", "")
            if status not in ("Success", "AlreadyStored"):
                raise OrthancError(f"POST /instances: {status or 'no status'}")
