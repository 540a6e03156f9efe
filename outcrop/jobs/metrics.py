"""Batch jobs in the server's Prometheus metrics (GET /metrics), beside the per-model gauges of metering.metrics.

Per model: the jobs running here, their records in flight and still to start. Records done are counted by
`outcrop_requests{dialect="batch", operation=..., status=...}` and their tokens by `outcrop_tokens`, as every
invocation is; their rate is the batch throughput.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class BatchProgress(Collector):
    def __init__(self, progress: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self._progress = progress

    def collect(self) -> Iterable[GaugeMetricFamily]:
        labels = ["model"]
        jobs = GaugeMetricFamily("outcrop_batch_jobs_running", "Batch jobs running records here", labels=labels)
        flight = GaugeMetricFamily("outcrop_batch_records_in_flight", "Batch records being run", labels=labels)
        queued = GaugeMetricFamily("outcrop_batch_records_queued", "Batch records still to start", labels=labels)
        for model, p in self._progress().items():
            jobs.add_metric([model], p["jobs"])
            flight.add_metric([model], p["in_flight"])
            queued.add_metric([model], p["queued"])
        yield from (jobs, flight, queued)
