"""The Orthanc configuration ``make up`` runs (and the tests' Orthanc): written on each start, then ``exec``.

    python -m services.pacs.orthanc_config --out .data/orthanc/orthanc.json

A local PACS for the stack on this machine: storage and index under ``$DISEASEID_DATA_DIR/orthanc``, the REST
API and DICOMweb (``/dicom-web``) on ``ORTHANC_PORT`` (8042) for local connections only, no login (nothing
but this machine can reach it), a DICOM listener (C-STORE from a scanner or a viewer) only when
``ORTHANC_DICOM_PORT`` is set, and a series "stable" ``DISEASEID_PACS_STABLE_AGE_S`` (3) seconds after its
last instance arrived (Orthanc's default is 60), which is when the bridge takes it.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

# Debian's orthanc-dicomweb package puts the plugin here.
DICOMWEB_PLUGINS = (Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
                    Path("/usr/lib/orthanc/libOrthancDicomWeb.so"))


def dicomweb_plugin() -> Path | None:
    return next((p for p in DICOMWEB_PLUGINS if p.exists()), None)


def config(*, data_dir: Path, http_port: int, dicom_port: int | None = None, stable_age_s: int = 3,
           name: str = "diseaseid") -> dict:
    plugin = dicomweb_plugin()
    return {
        "Name": name,
        "StorageDirectory": str(data_dir / "db"),
        "IndexDirectory": str(data_dir / "db"),
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": dicom_port is not None,
        "DicomPort": dicom_port or 4242,
        "StableAge": stable_age_s,
        "Plugins": [str(plugin)] if plugin else [],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.pacs.orthanc_config", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    data_dir = args.out.resolve().parent
    dicom_port = os.environ.get("ORTHANC_DICOM_PORT")
    conf = config(data_dir=data_dir, http_port=int(os.environ.get("ORTHANC_PORT", "8042")),
                  dicom_port=int(dicom_port) if dicom_port else None,
                  stable_age_s=int(os.environ.get("DISEASEID_PACS_STABLE_AGE_S", "3")))
    (data_dir / "db").mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(conf, indent=2) + "\n")
    if not conf["Plugins"]:
        print("orthanc_config: no DICOMweb plugin found (apt-get install orthanc-dicomweb); the bridge stores "
              "by POST /instances instead of STOW-RS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
