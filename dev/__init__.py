"""Development tools, never part of a deployed image: ``make up``'s process supervision (``supervise``,
``supervised``) and its Redis (``local_redis``), ``make compose-test`` (``compose_test``) and ``make mutation``'s
report (``mutation_report``). Run from the repository root as ``python -m dev.<tool>``; ``scripts/`` keeps the
training recipes."""
