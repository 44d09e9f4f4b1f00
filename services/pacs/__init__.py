"""The PACS bridge: watches Orthanc for new stable series, sends them to the inference and explain services
and stores the DICOM results back into Orthanc (see services/pacs/bridge.py)."""
