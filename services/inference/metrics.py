"""Inference metrics: predictions by endpoint/task/model/status, their latency, and model load times."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.errors import ServiceError
from services.common.metrics import LATENCY_BUCKETS, HttpMetrics

NS = "diseaseid"


class InferenceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = HttpMetrics(self.registry, NS)
        self.predictions = Counter(
            "predictions", "Prediction requests by endpoint, task, model and HTTP status",
            ("endpoint", "task", "model", "status"), namespace=NS, registry=self.registry)
        self.prediction_latency = Histogram(
            "prediction_duration_seconds", "Server-side latency of prediction requests",
            ("endpoint", "task", "model"), namespace=NS, registry=self.registry, buckets=LATENCY_BUCKETS)
        self.slices = Counter("predicted_slices", "Slices passed through a model", ("task", "model"),
                              namespace=NS, registry=self.registry)
        self.model_load = Gauge("model_load_seconds", "Time to load (and warm up) each model",
                                ("task", "model"), namespace=NS, registry=self.registry)
        self.models_loaded = Gauge("models_loaded", "Models loaded and ready", namespace=NS,
                                   registry=self.registry)

    @contextmanager
    def observe(self, endpoint: str, task: str, model: str) -> Iterator[None]:
        """Count one prediction request with the status it ends with, and time it."""
        start = time.perf_counter()
        status = "500"
        try:
            yield
            status = "200"
        except ServiceError as exc:
            status = str(exc.status)
            raise
        finally:
            self.predictions.labels(endpoint, task, model, status).inc()
            self.prediction_latency.labels(endpoint, task, model).observe(time.perf_counter() - start)
