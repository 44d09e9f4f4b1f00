#!/usr/bin/env bash
# Orthanc with its DICOMweb plugin and dicom3tools (dciodvfy) from Debian's packages, for the PACS bridge's
# tests (tests/pacs/) and the validation of every DICOM object we write (tests/services/test_dicom_results.py,
# test_explain_dicom.py). The tests start their own Orthanc on a free loopback port; the package's system
# service is not started (no init in CI; policy-rc.d may refuse it anyway). Without these the tests skip.
set -euo pipefail
if command -v Orthanc >/dev/null 2>&1 && command -v dciodvfy >/dev/null 2>&1 \
   && [[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]]; then
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb dicom3tools
Orthanc --version | head -1
