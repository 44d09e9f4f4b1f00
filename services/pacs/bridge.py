"""The PACS bridge: Orthanc's new stable series in, our DICOM results stored back into the same study.

    python -m services.pacs            # until SIGTERM / Ctrl-C
    python -m services.pacs --once     # one pass over the change feed, then exit

Each pass reads Orthanc's change feed (``GET /changes``) after the last change handled. For every
``StableSeries`` (Orthanc's "no new instance for StableAge seconds") whose modality and description match a
route (settings), it downloads the instances in stack order and

* ``dementia``: sends the series as one subject's study (``POST /predict/study``) and stores its SR; explains
  the slice that weighed most in the subject-level answer (attention; the middle slice without one);
* ``tumor``: sends each slice (``POST /predict``) and stores each SR; explains each slice;

and stores the results (SR, heatmap and panel Secondary Capture images, the explanation's SR) by DICOMweb
STOW-RS, or Orthanc's ``POST /instances`` where DICOMweb is absent. An explanation of an image the model
does not take for a brain MRI slice is not stored: its SR says so and that is all.

Idempotent and resumable (services/pacs/state.py): the last change handled and every series' outcome are
kept in a state file written after each change; a restart (of the bridge or Orthanc) goes on from there, and
a series already handled with the same instances is not handled again. Our results carry UIDs derived from
their sources (services/common/dicom_results.py), so even a series handled again after a crash between
storing and recording leaves one copy in the PACS.

Bounded: a series the services refuse (the API's refusals: mixed patients/series/sizes, not an image, too
many slices) or that fails is recorded as failed with the reason and never blocks the next one; only an
unreachable service or Orthanc (down, restarting, 503) holds the feed, and the bridge tries again after
``poll_s``.
"""
from __future__ import annotations

import argparse
import io
import logging
import signal
import time
from collections.abc import Callable

import pydicom

from diseaseid.outcomes import DIAGNOSIS
from services.common.logs import setup_logging
from services.pacs.client import Failed, ServicesClient, Unavailable
from services.pacs.orthanc import OrthancClient, OrthancError, Series
from services.pacs.settings import PacsSettings
from services.pacs.state import BridgeState

log = logging.getLogger("services.pacs")


class Retry(Exception):
    """Something outside this series is unavailable: leave the feed where it is and try again later."""


def _sop_uid(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


class Bridge:
    def __init__(self, settings: PacsSettings, orthanc: OrthancClient, services: ServicesClient,
                 state: BridgeState):
        self.settings, self.orthanc, self.services, self.state = settings, orthanc, services, state
        self._store: Callable[[list[bytes]], None] | None = None
        self.stopping = False

    # -- the feed ------------------------------------------------------------------------------------------
    def check_orthanc(self) -> None:
        """Start over from the feed's beginning when the state belongs to another Orthanc or a database that
        was reset (its last change lies below ours); series records still keep handled series from repeats."""
        identity = self.orthanc.identity()
        last = self.orthanc.last_change()
        if self.state.orthanc and (identity != self.state.orthanc or last < self.state.last_seq):
            log.warning("Orthanc %r (last change %d) is not the one of the state (%r, %d): reading its feed from "
                        "the start", identity, last, self.state.orthanc, self.state.last_seq)
            self.state.last_seq = 0
        self.state.orthanc = identity
        self.state.save()

    def store(self, files: list[bytes]) -> None:
        if self._store is None:
            mode = self.settings.store
            if mode == "auto":
                mode = "stow" if self.orthanc.has_dicomweb() else "rest"
                log.info("storing results by %s", "DICOMweb STOW-RS" if mode == "stow" else "POST /instances")
            self._store = self.orthanc.stow if mode == "stow" else self.orthanc.post_instances
        self._store(files)

    def run_once(self) -> int:
        """Handle the changes after the last one handled; returns how many were read."""
        changes, last, done = self.orthanc.changes(self.state.last_seq)
        if not changes and last < self.state.last_seq:  # a new database under the same Orthanc
            log.warning("Orthanc's feed ends at %d, before our %d: a new database; reading it from the start",
                        last, self.state.last_seq)
            self.state.last_seq = 0
            self.state.save()
            return 0
        for change in changes:
            if self.stopping:
                break
            if change.get("ChangeType") == "StableSeries" and change.get("ResourceType") == "Series":
                self.handle_series(str(change["ID"]))  # Retry propagates: the change stays unhandled
            self.state.last_seq = int(change["Seq"])
            self.state.save()
        if not changes and last > self.state.last_seq:
            self.state.last_seq = last
            self.state.save()
        return len(changes)

    def run(self) -> None:
        while not self.stopping:
            try:
                self.check_orthanc()
                break
            except OrthancError as exc:
                log.warning("Orthanc not reachable (%s); trying again in %.0f s", exc, self.settings.poll_s)
                time.sleep(self.settings.poll_s)
        while not self.stopping:
            try:
                if self.run_once():
                    continue  # more may be waiting
            except (OrthancError, Retry, Unavailable) as exc:
                log.warning("waiting: %s", exc)
            time.sleep(self.settings.poll_s)

    # -- one series ----------------------------------------------------------------------------------------
    def handle_series(self, series_id: str) -> None:
        try:
            series = self.orthanc.series(series_id)
        except OrthancError as exc:
            if "HTTP 404" in str(exc):  # deleted since: nothing to do
                self.state.record(series_id, status="skipped", reason="the series no longer exists")
                return
            raise Retry(str(exc)) from exc
        previous = self.state.series.get(series_id)
        if previous is not None and previous.status in ("done", "failed", "skipped") \
                and previous.instances >= len(series.instances):
            log.info("series %s: already %s with %d instances", series_id, previous.status, previous.instances)
            return
        route = self.settings.route(series.modality, series.description)
        if route is None:
            self.state.record(series_id, status="skipped", instances=len(series.instances),
                              reason=f"no route for modality {series.modality!r} and this description")
            return
        if len(series.instances) > self.settings.max_slices:
            self._failed(series, route.task, "too_many_slices",
                         f"{len(series.instances)} instances; the bridge takes at most {self.settings.max_slices}")
            return
        log.info("series %s: %d slices for %s", series_id, len(series.instances), route.task)
        try:
            outputs = self._process(series, route.task)
        except (Unavailable, OrthancError) as exc:
            raise Retry(f"series {series_id}: {exc}") from exc
        except Failed as exc:
            record = self.state.record(series_id, tries=(previous.tries if previous else 0) + 1,
                                       task=route.task, reason=str(exc))
            refused = exc.status is not None and 400 <= exc.status < 500
            if refused or record.tries >= self.settings.attempts:
                self._failed(series, route.task, exc.code or "failed", exc.message, tries=record.tries)
                return
            self.state.save()
            raise Retry(f"series {series_id}: {exc} (try {record.tries} of {self.settings.attempts})") from exc
        runs = (previous.runs if previous else 0) + 1
        self.state.record(series_id, status="done", instances=len(series.instances), runs=runs, task=route.task,
                          reason="", outputs=outputs)
        log.info("series %s: done, %d objects stored", series_id, len(outputs))

    def _failed(self, series: Series, task: str, code: str, message: str, tries: int = 0) -> None:
        log.warning("series %s: failed (%s: %s)", series.id, code, message)
        self.state.record(series.id, status="failed", instances=len(series.instances), task=task,
                          reason=f"{code}: {message}", tries=tries)

    def _explain(self, data: bytes, task: str) -> list[bytes]:
        if not self.settings.explain:
            return []
        result, objects = self.services.explain(data, task, timeout_s=self.settings.explain_timeout_s)
        return objects if result.outcome == DIAGNOSIS else []

    def _process(self, series: Series, task: str) -> list[str]:
        files = [self.orthanc.file(i.id) for i in series.instances]
        stored: list[str] = []

        def keep(objects: list[bytes]) -> None:
            if objects:
                self.store(objects)
                stored.extend(_sop_uid(o) for o in objects)

        if task == "dementia":
            answer = self.services.study(files, task, as_dicom=False)
            sr = self.services.study(files, task, as_dicom=True)
            attention = answer.aggregation.attention
            best = max(range(len(files)), key=lambda i: attention[i]) if attention else len(files) // 2
            keep([sr, *self._explain(files[best], task)])
        else:
            for data in files:
                keep([self.services.predict_sr(data, task), *self._explain(data, task)])
        return stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.pacs", description=__doc__.split("\n")[0])
    parser.add_argument("--once", action="store_true", help="one pass over the change feed, then exit")
    args = parser.parse_args(argv)
    settings = PacsSettings()
    setup_logging(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per poll of the change feed
    auth = None
    if settings.orthanc_user:
        auth = (settings.orthanc_user, settings.orthanc_password.get_secret_value()
                if settings.orthanc_password else "")
    orthanc = OrthancClient(settings.orthanc_url, auth=auth, timeout_s=settings.request_timeout_s)
    services = ServicesClient(settings.inference_url, settings.explain_url,
                              api_key=settings.api_key.get_secret_value() if settings.api_key else None,
                              timeout_s=settings.request_timeout_s)
    bridge = Bridge(settings, orthanc, services, BridgeState.load(settings.state_path))

    def stop(signum, frame):  # finish the series at hand, then leave
        log.info("stopping (signal %d)", signum)
        bridge.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("watching %s for %s; results to the same studies; state in %s", settings.orthanc_url,
             ", ".join(f"{r.modality}/{r.description or '*'} -> {r.task}" for r in settings.routes),
             settings.state_path)
    try:
        if args.once:
            bridge.check_orthanc()
            while bridge.run_once() and not bridge.stopping:
                pass
        else:
            bridge.run()
    finally:
        orthanc.close()
        services.close()
    return 0
