"""The explain worker: ``python -m services.explain.worker``. An RQ worker that runs ``explain.explain_job``
with models loaded once per process (``models``); ``main`` adds heartbeats and recovery."""
