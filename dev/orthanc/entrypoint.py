"""Orthanc configured from ORTHANC__* environment variables, as the orthancteam/orthanc image does.

The stand-in image (dev/orthanc/Dockerfile) for hosts that cannot pull orthancteam/orthanc: the same variables
in docker-compose.yml configure either. A variable's name is the setting's path: ``__`` between levels,
``_`` before each capital of a word, upper-cased (``ORTHANC__STABLE_AGE`` -> ``StableAge``,
``ORTHANC__DICOM_WEB__ENABLE`` -> ``DicomWeb.Enable``); a value that parses as JSON (true, 3, [...]) is
taken as such, anything else as a string. ``DICOM_WEB_PLUGIN_ENABLED=true`` loads the DICOMweb plugin.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

CONFIG = Path("/tmp/orthanc.json")  # written on each start: the environment is the configuration
STORAGE = "/var/lib/orthanc/db"
PLUGINS = {"DICOM_WEB_PLUGIN_ENABLED": ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                                        "/usr/lib/orthanc/libOrthancDicomWeb.so")}


def key(word_path: str) -> list[str]:
    return ["".join(w.capitalize() for w in level.split("_")) for level in word_path.split("__")]


def value(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def config(environ: dict[str, str]) -> dict:
    conf: dict = {"StorageDirectory": STORAGE, "IndexDirectory": STORAGE, "HttpPort": 8042, "DicomPort": 4242,
                  "RemoteAccessAllowed": True, "AuthenticationEnabled": True, "Plugins": []}
    for name, paths in PLUGINS.items():
        if environ.get(name, "").lower() == "true":
            conf["Plugins"] += [p for p in paths if Path(p).exists()][:1]
    if conf["Plugins"]:
        conf["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
    for name, text in sorted(environ.items()):
        if not name.startswith("ORTHANC__"):
            continue
        *parents, leaf = key(name[len("ORTHANC__"):])
        node = conf
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value(text)
    return conf


def main() -> None:
    conf = config(dict(os.environ))
    Path(conf["StorageDirectory"]).mkdir(parents=True, exist_ok=True)
    CONFIG.write_text(json.dumps(conf, indent=2) + "\n")
    print(f"orthanc stand-in: {json.dumps(conf)}", flush=True)
    os.execvp("Orthanc", ["Orthanc", *sys.argv[1:], str(CONFIG)])


if __name__ == "__main__":
    main()
