"""The explain service: two deployables that share a Redis and nothing else.

* ``api/``: the HTTP API, ``uvicorn services.explain.api.main:app``. ``POST /explain`` decodes and checks the
  upload and queues an RQ job; ``GET /explain/{id}`` and the result routes read the job and its files back.
  It never imports torch or the explainers (tests/services/test_torch_free.py checks).
* ``worker/``: the RQ worker, ``python -m services.explain.worker``. It loads the models once and runs
  ``worker.explain.explain_job``, which calls the ML core (``diseaseid.explain.report``) and stores the files.

Beside them, what both read: ``settings.py`` (one ``ExplainSettings``, so the queue name, TTL and timings
agree) and ``redis_store.py`` (every Redis key besides RQ's own: result files, dedup entries, statistics).
The API names the job function by a string (``api.submit.JOB_FUNCTION``), which a test resolves.
"""
