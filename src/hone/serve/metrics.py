"""Prometheus metrics and the structured JSON request log of one server.

Each app has its own `CollectorRegistry` (several servers in one process, as in tests, do not
collide). Content (prompts, outputs) reaches the request log only with `log_content`.
"""

from __future__ import annotations

import json
import logging
import sys
import time

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServeMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("hone_requests", "HTTP requests", ["route", "status"], registry=r)
        self.errors = Counter("hone_request_errors", "Requests answered with an error", ["route", "code"], registry=r)
        self.latency = Histogram("hone_request_latency_seconds", "Time to the full response", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("hone_time_to_first_token_seconds", "Time from request to its first token",
                              ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("hone_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generated_tokens = Counter("hone_generated_tokens", "Tokens generated", registry=r)
        self.tokens_per_second = Gauge("hone_tokens_per_second", "Generated tokens/s of the last batch", registry=r)
        self.batch_rows = Histogram("hone_batch_rows", "Rows decoded together per batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.kind_requests = Counter("hone_model_kind_requests", "Generation requests on the base and on adapters",
                                     ["kind"], registry=r)
        self.per_model = CollectorRegistry()
        """Series that name models (a project's fine-tuned model names): shown only as `metrics_models` allows."""
        self.model_requests = Counter("hone_model_requests", "Generation requests per model (base or adapter)",
                                      ["model"], registry=self.per_model)
        self.cache = Counter("hone_adapter_cache_events", "Adapter cache hits, misses and evictions",
                             ["event"], registry=r)
        self.adapters_loaded = Gauge("hone_adapters_loaded", "Adapters whose weights are in memory", registry=r)

    def on_batch(self, rows: int, tokens: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.generated_tokens.inc(tokens)
        if seconds > 0:
            self.tokens_per_second.set(tokens / seconds)

    def on_cache_event(self, event: str, name: str) -> None:
        self.cache.labels(event).inc()

    def on_request(self, model: str, adapter: str | None) -> None:
        self.kind_requests.labels("base" if adapter is None else "adapter").inc()
        self.model_requests.labels(model).inc()

    def render(self, *, per_model: bool = False) -> bytes:
        """The Prometheus text; the series that name models only with `per_model`."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry) + (generate_latest(self.per_model) if per_model else b"")


class RequestLog:
    """One JSON line per request (time, id, route, status, latency, model, tokens, key id)."""

    def __init__(self, target: str | None, *, content: bool = False) -> None:
        self.content = content
        self.logger = None
        if target:
            self.logger = logging.getLogger(f"hone.requests.{id(self)}")
            self.logger.propagate = False
            self.logger.setLevel(logging.INFO)
            handler = logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)

    def write(self, record: dict, content: dict | None = None) -> None:
        if self.logger is None:
            return
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
        if self.content and content:
            record["content"] = content
        self.logger.info(json.dumps(record, default=str))

    def close(self) -> None:
        if self.logger is not None:
            for handler in list(self.logger.handlers):
                handler.close()
                self.logger.removeHandler(handler)
