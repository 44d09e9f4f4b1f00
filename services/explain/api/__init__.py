"""The explain HTTP API: ``uvicorn services.explain.api.main:app``. Queues jobs, reports them, serves their files."""
