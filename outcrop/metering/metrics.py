"""Prometheus metrics: requests, latency and time-to-first-token histograms, tokens; per model the slots
busy, queue depth, KV-cache cells used and prompt-cache hits.

One CollectorRegistry per server (not the process-global one), so several servers in one process
(tests, embedding) keep their own counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from outcrop.engines.base import EngineStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Queues(Collector):
    def __init__(self, stats: Callable[[], dict[str, EngineStats]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["model"]
        running = GaugeMetricFamily("outcrop_requests_in_flight", "Requests generating now (slots busy)", labels=labels)
        slots = GaugeMetricFamily("outcrop_slots", "Requests a model can run at once", labels=labels)
        queued = GaugeMetricFamily("outcrop_queue_depth", "Requests waiting for a slot", labels=labels)
        kv_used = GaugeMetricFamily("outcrop_kv_cells_used", "Tokens held in the KV cache, cached prompts included",
                                    labels=labels)  # fmt: skip
        kv = GaugeMetricFamily("outcrop_kv_cells", "KV-cache capacity in tokens", labels=labels)
        prompt = CounterMetricFamily("outcrop_prompt_tokens", "Prompt tokens of the requests run", labels=labels)
        hits = CounterMetricFamily("outcrop_prompt_cache_hit_tokens", "Prompt tokens taken from the prompt cache",
                                   labels=labels)  # fmt: skip
        for model, s in self._stats().items():
            running.add_metric([model], s.in_flight)
            slots.add_metric([model], s.slots)
            queued.add_metric([model], s.queued)
            kv_used.add_metric([model], s.kv_cells_used)
            kv.add_metric([model], s.kv_cells)
            prompt.add_metric([model], s.prompt_tokens)
            hits.add_metric([model], s.prompt_cache_hit_tokens)
        yield from (running, slots, queued, kv_used, kv, prompt, hits)


class Metrics:
    def __init__(self, engine_stats: Callable[[], dict[str, EngineStats]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("outcrop_requests", "Invocations", ["dialect", "operation", "model", "status"],
                                registry=self.registry)  # fmt: skip
        self.latency = Histogram("outcrop_request_latency_seconds", "Invocation latency", ["dialect", "model"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.ttft = Histogram("outcrop_time_to_first_token_seconds", "Time to the first token", ["model"],
                              buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.tokens = Counter("outcrop_tokens", "Tokens processed", ["model", "kind"], registry=self.registry)
        self.registry.register(_Queues(engine_stats))

    def observe(self, dialect: str, operation: str, model: str, status: str, latency_ms: int, ttft_ms: int | None,
                input_tokens: int, output_tokens: int) -> None:  # fmt: skip
        self.requests.labels(dialect, operation, model, status).inc()
        self.latency.labels(dialect, model).observe(latency_ms / 1000)
        if ttft_ms is not None and dialect != "batch":  # (interactive latency: a batch record's wait is no wait)
            self.ttft.labels(model).observe(ttft_ms / 1000)
        if input_tokens:
            self.tokens.labels(model, "input").inc(input_tokens)
        if output_tokens:
            self.tokens.labels(model, "output").inc(output_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
