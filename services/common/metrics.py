"""Prometheus helpers: a per-app registry, HTTP request metrics by route template, the /metrics response.

Each app owns its :class:`~prometheus_client.CollectorRegistry` (so two apps in one process, as in tests,
never collide). Route labels are templates (``/explain/{job_id}``), never raw paths, and unmatched paths
share one label, so a scanner cannot blow up the series count.
"""
from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds; dense where our requests live (a few ms to a second).
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry, namespace: str = "diseaseid"):
        self.registry = registry
        self.requests = Counter("http_requests", "HTTP requests by method, route template and status",
                                ("method", "route", "status"), namespace=namespace, registry=registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency by route template",
                                 ("method", "route"), namespace=namespace, registry=registry,
                                 buckets=LATENCY_BUCKETS)


class HttpMetricsMiddleware:
    """Pure-ASGI middleware recording every HTTP request in :class:`HttpMetrics`."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)


def metrics_response(registry: CollectorRegistry) -> Response:
    """The Prometheus text exposition of ``registry``."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
