"""The server's counters, rendered in Prometheus' text format (``GET /metrics``)."""

from __future__ import annotations

import threading
from collections import Counter

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)


class Histogram:
    """Cumulative buckets, a sum and a count, as Prometheus reads them."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for number, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[number] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out = [
            f'{name}_bucket{{le="{bound:g}"}} {count}' for bound, count in zip(self.buckets, self.counts, strict=True)
        ]
        return [
            *out,
            f'{name}_bucket{{le="+Inf"}} {self.count}',
            f"{name}_sum {self.total:g}",
            f"{name}_count {self.count}",
        ]


class Metrics:
    """Everything ``/metrics`` reports; updated from the worker thread and the event loop, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # by outcome: ok, invalid, unauthorized, queue_full, cancelled, error
        self.images = 0
        self.errors = 0
        self.loads = 0
        self.unloads = 0
        self.load_seconds = 0.0
        self.compile_seconds = 0.0  # warm-up calls of compiled models, at load
        self.queue_depth = 0
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.latency = Histogram(LATENCY_BUCKETS)

    def count(self, outcome: str) -> None:
        with self.lock:
            self.requests[outcome] += 1

    def render(self) -> str:
        with self.lock:
            lines = [
                "# HELP imagegen_requests_total Image requests by outcome.",
                "# TYPE imagegen_requests_total counter",
                *(f'imagegen_requests_total{{outcome="{k}"}} {v}' for k, v in sorted(self.requests.items())),
                "# TYPE imagegen_images_total counter",
                f"imagegen_images_total {self.images}",
                "# TYPE imagegen_errors_total counter",
                f"imagegen_errors_total {self.errors}",
                "# TYPE imagegen_queue_depth gauge",
                f"imagegen_queue_depth {self.queue_depth}",
                "# TYPE imagegen_model_loads_total counter",
                f"imagegen_model_loads_total {self.loads}",
                "# TYPE imagegen_model_unloads_total counter",
                f"imagegen_model_unloads_total {self.unloads}",
                "# TYPE imagegen_model_load_seconds_total counter",
                f"imagegen_model_load_seconds_total {self.load_seconds:g}",
                "# HELP imagegen_model_compile_seconds_total Warm-up (compilation) of compiled models at load.",
                "# TYPE imagegen_model_compile_seconds_total counter",
                f"imagegen_model_compile_seconds_total {self.compile_seconds:g}",
                "# HELP imagegen_batch_size Images per pipeline call.",
                "# TYPE imagegen_batch_size histogram",
                *self.batch_sizes.lines("imagegen_batch_size"),
                "# HELP imagegen_request_seconds Time from a request's arrival to its answer.",
                "# TYPE imagegen_request_seconds histogram",
                *self.latency.lines("imagegen_request_seconds"),
            ]
        return "\n".join(lines) + "\n"
