"""The explain worker with RQ's own heartbeat steps back, for ``dev.explain_round_trips_ab`` only.

    .venv/bin/python -m dev.rq_plain_worker     # as ``python -m services.explain.worker``

``ExplainWorker`` skips RQ's worker beat right after a dequeue and its job beat after the job
(services/explain/worker/main.py); this runs the same worker with RQ's ``SimpleWorker`` methods in their place.
"""
from __future__ import annotations

from rq import SimpleWorker

from services.explain.worker.main import ExplainWorker, main

for _name in ("handle_execution_ended", "reorder_queues", "dequeue_job_and_maintain_ttl"):
    setattr(ExplainWorker, _name, getattr(SimpleWorker, _name))
ExplainWorker._job_dequeued = False  # never set: every beat is sent, as RQ sends it

if __name__ == "__main__":
    raise SystemExit(main())
