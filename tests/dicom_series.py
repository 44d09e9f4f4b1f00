"""A realistic MR series for tests of our DICOM results: fixture slices (JPEG) as MR Image Storage instances
of one study and series, with the patient, study, series, geometry and UIDs a scanner writes.

Only test input is written tag by tag here (through ``tests.helpers.make_dicom``; our own objects come from
highdicom); the identifying values are recognisable so that tests can follow them into what we write.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.helpers import make_dicom

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@dataclass
class Series:
    files: list[bytes]
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    patient_id: str
    patient_name: str
    description: str
    paths: list[Path] = field(default_factory=list)


def fixture_slices(task: str, cls: str, n: int, prefix: str = "") -> list[Path]:
    paths = sorted(p for p in (FIXTURES / task / cls).glob("*.jpg") if p.name.startswith(prefix))
    if len(paths) < n:
        raise ValueError(f"only {len(paths)} fixture slices in {task}/{cls} starting {prefix!r}")
    return paths[:n]


def mr_series(paths: list[Path], *, patient_id: str = "PID-7731", patient_name: str = "Doe^Jane",
              description: str = "T1 AX BRAIN", study_uid: str | None = None, modality: str = "MR") -> Series:
    """One MR series holding ``paths`` in stack order (12-bit greys from the 8-bit fixture JPEGs)."""
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    frame_uid = generate_uid()
    files, sops = [], []
    for i, path in enumerate(paths):
        grey = np.asarray(Image.open(path).convert("L"), dtype=np.uint16) * 16  # 12 bits stored
        sop_uid = generate_uid()
        files.append(make_dicom(
            grey, bits_stored=12, SOPInstanceUID=sop_uid, SpecificCharacterSet="ISO_IR 100",
            ImageType=["ORIGINAL", "PRIMARY", "OTHER"], StudyDate="20240301", StudyTime="101500",
            SeriesDate="20240301", SeriesTime="102000", AccessionNumber="ACC-5521", Modality=modality,
            Manufacturer="TestScanner", ReferringPhysicianName="Ref^Doctor", SeriesDescription=description,
            PatientName=patient_name, PatientID=patient_id, PatientBirthDate="19580412", PatientSex="F",
            BodyPartExamined="BRAIN", PatientPosition="HFS", ScanningSequence="SE", SequenceVariant="NONE",
            ScanOptions="", MRAcquisitionType="2D", SliceThickness="5", RepetitionTime="500", EchoTime="15",
            EchoTrainLength="1", MagneticFieldStrength="1.5", StudyInstanceUID=study_uid,
            SeriesInstanceUID=series_uid, StudyID="S-88", SeriesNumber="3", InstanceNumber=str(i + 1),
            ImagePositionPatient=[-120.0, -120.0, 5.0 * i], ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            FrameOfReferenceUID=frame_uid, PositionReferenceIndicator="", SliceLocation=str(5.0 * i),
            PixelSpacing=[0.9375, 0.9375]))
        sops.append(sop_uid)
    return Series(files, study_uid, series_uid, sops, patient_id, patient_name, description, list(paths))


def read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


# -- reading what we write ---------------------------------------------------------------------------------
def dciodvfy_errors(data: bytes) -> list[str]:
    """The ``Error`` lines dicom3tools' validator prints for one object (the caller skips without it)."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".dcm") as f:
        f.write(data)
        f.flush()
        out = subprocess.run(["dciodvfy", f.name], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def content_items(ds: Dataset) -> list[Dataset]:
    """Every SR content item of ``ds``, depth first."""
    items = []
    for item in ds.get("ContentSequence", []):
        items.append(item)
        items.extend(content_items(item))
    return items


def concept(item: Dataset) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return str(code.CodingSchemeDesignator), str(code.get("CodeValue") or code.get("LongCodeValue"))


def groups(sr: Dataset) -> list[Dataset]:
    """The TID 1501 measurement groups of a TID 1500 report, in order."""
    return [i for i in content_items(sr) if concept(i) == ("DCM", "125007")]


def group_facts(group: Dataset) -> dict:
    """What one measurement group says: finding code and meaning, probabilities by concept, outcome, sources,
    algorithm name and version."""
    facts: dict = {"probabilities": {}, "sources": [], "finding": None, "outcome": None, "numbers": {}}
    for item in content_items(group):
        key = concept(item)
        if key == ("DCM", "121071"):  # Finding
            code = item.ConceptCodeSequence[0]
            facts["finding"] = (str(code.CodeValue), str(code.CodeMeaning))
        elif item.ValueType == "NUM":
            value = float(item.MeasuredValueSequence[0].get("FloatingPointValue",
                                                              item.MeasuredValueSequence[0].NumericValue))
            facts["numbers"][key[1]] = value
        elif key == ("99DISEASEID", "outcome"):
            facts["outcome"] = str(item.ConceptCodeSequence[0].CodeValue)
        elif item.ValueType == "IMAGE":
            facts["sources"].append(str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
        elif key == ("DCM", "111001"):
            facts["algorithm"] = str(item.TextValue)
        elif key == ("DCM", "111003"):
            facts["version"] = str(item.TextValue)
    return facts
