"""Prometheus metrics of one model server app, in a registry of its own (several apps in one process, as in
tests, never collide), exposed at `GET /metrics`.

| metric | type | labels |
|---|---|---|
| `modelyard_serving_requests_total` | counter | model, version, protocol, code |
| `modelyard_serving_errors_total` | counter | model, version, protocol, code, error |
| `modelyard_serving_request_duration_seconds` | histogram | model, version |
| `modelyard_serving_requests_in_flight` | gauge | model, version |
| `modelyard_serving_batch_size_rows` | histogram | model, version |
| `modelyard_serving_batch_duration_seconds` | histogram | model, version |
| `modelyard_serving_queue_rows` | gauge | model, version |
| `modelyard_serving_replicas` | gauge | model, version |
| `modelyard_serving_desired_replicas` | gauge | model, version (autoscaled versions only) |
| `modelyard_serving_autoscale_decisions_total` | counter | model, version, direction (up, down) |
| `modelyard_serving_model_load_seconds` | gauge | model, version |
| `modelyard_serving_payload_log_rows_total` | counter | outcome (written, dropped) |
| `modelyard_serving_payload_log_errors_total` | counter | |
| `modelyard_serving_shadow_requests_total` | counter | model, version, shadow_version, outcome |
| `modelyard_serving_shadow_rows_total` | counter | model, version, shadow_version, outcome |
| `modelyard_serving_shadow_agreement` | gauge | model, version, shadow_version |

Shadow outcomes: a mirrored request is answered, failed or dropped (the shadow's queue was full); its rows
agreed or disagreed with the answer the client got (agreement = agreed / all rows compared).

Only inference requests are counted (`protocol`: v2, v1, invocations); a request naming an unknown model or
version is counted with empty model and version labels, so clients cannot create series at will.

The hot path stays cheap: the labelled children of a (model, version, protocol) are looked up once and
cached, in-flight requests are a plain integer read when scraped, and queue depth and replicas are read from
the batcher and the runner at scrape time (callback gauges), so a request costs one histogram observation
and one counter increment.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from modelyard.serving.deployment import ServedModel

# Request latency in seconds: fine steps through the milliseconds where serving lives, up to 10 s.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024)
BATCH_DURATION_BUCKETS = LATENCY_BUCKETS

CONTENT_TYPE = CONTENT_TYPE_LATEST
PROTOCOLS = ("v2", "v1", "invocations")


class ModelMetrics:
    """The series of one model version: in-flight count, batch observations, callback gauges."""

    __slots__ = ("in_flight", "latency", "observe_batch")

    def __init__(self, metrics: ServingMetrics, model: ServedModel) -> None:
        labels = (model.name, model.version)
        self.in_flight = 0
        self.latency = metrics.latency.labels(*labels)
        metrics.in_flight.labels(*labels).set_function(lambda: self.in_flight)
        batcher = model.batcher
        metrics.queue_rows.labels(*labels).set_function(lambda: batcher.stats.queue_rows)
        metrics.replicas.labels(*labels).set_function(lambda: model.replicas)
        if model.load_seconds is not None:
            metrics.load_seconds.labels(*labels).set(model.load_seconds)
        batch_rows = metrics.batch_rows.labels(*labels)
        batch_seconds = metrics.batch_seconds.labels(*labels)

        def observe_batch(rows: int, requests: int, seconds: float) -> None:
            batch_rows.observe(rows)
            batch_seconds.observe(seconds)

        self.observe_batch = observe_batch
        batcher.listeners.append(observe_batch)


class EndpointMetrics:
    """The series of one (model version, protocol): what one request updates."""

    __slots__ = ("_errors", "_labels", "_metrics", "_requests", "model")

    def __init__(
        self, metrics: ServingMetrics, model: ModelMetrics | None, labels: tuple[str, str, str]
    ) -> None:
        self.model = model
        self._metrics = metrics
        self._labels = labels
        self._requests: dict[int, Counter] = {}
        self._errors: dict[tuple[int, str], Counter] = {}

    def start(self) -> None:
        """A request began (in flight until `stop`)."""
        if self.model is not None:
            self.model.in_flight += 1

    def stop(self) -> None:
        if self.model is not None:
            self.model.in_flight -= 1

    def observe(self, status: int, seconds: float, error: str | None = None) -> None:
        """Count one answered request (its HTTP status, and its error code if it failed)."""
        if self.model is not None:
            self.model.latency.observe(seconds)
        child = self._requests.get(status)
        if child is None:
            child = self._requests[status] = self._metrics.requests.labels(*self._labels, str(status))
        child.inc()
        if status >= 400:
            key = (status, error or "")
            errors = self._errors.get(key)
            if errors is None:
                errors = self._errors[key] = self._metrics.errors.labels(*self._labels, *map(str, key))
            errors.inc()


class AutoscaleCollector(Collector):
    """The autoscalers' series, read when scraped from the served models that have one (an autoscaler may be
    attached after the app is made): the replicas each recommends now, and its decisions by direction."""

    def __init__(self, models: Iterable[ServedModel]) -> None:
        self._models = models

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        desired, decisions = self._families()
        for model in list(self._models):
            autoscaler = model.batcher.autoscaler
            if autoscaler is not None:
                desired.add_metric((model.name, model.version), autoscaler.desired)
                for direction, count in autoscaler.counts.items():
                    decisions.add_metric((model.name, model.version, direction), count)
        return desired, decisions

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily]:
        labels = ("model", "version")
        return (
            GaugeMetricFamily(
                "modelyard_serving_desired_replicas",
                "Replicas the autoscaler recommends from the requests in flight, before its delays.",
                labels=labels,
            ),
            CounterMetricFamily(
                "modelyard_serving_autoscale_decisions",
                "Autoscaling decisions, by direction (up, down).",
                labels=(*labels, "direction"),
            ),
        )


class ServingMetrics:
    """Every metric of one serving app, registered in `registry` (a new `CollectorRegistry` by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        model_labels = ("model", "version")
        request_labels = (*model_labels, "protocol", "code")

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, model_labels, registry=self.registry)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, model_labels, buckets=buckets, registry=self.registry)

        prefix = "modelyard_serving_"
        self.requests = counter(prefix + "requests", "Inference requests answered, by HTTP status code.",
                                request_labels)  # fmt: skip
        self.errors = counter(
            prefix + "errors",
            "Inference requests answered with an error, by HTTP status and error code.",
            (*request_labels, "error"),
        )
        self.latency = histogram(
            prefix + "request_duration_seconds",
            "Time from receiving an inference request to its response (decode, queue, predict, encode).",
            LATENCY_BUCKETS,
        )
        self.in_flight = gauge(prefix + "requests_in_flight", "Inference requests being answered now.")
        self.batch_rows = histogram(
            prefix + "batch_size_rows", "Rows per predicted batch.", BATCH_SIZE_BUCKETS
        )
        self.batch_seconds = histogram(
            prefix + "batch_duration_seconds",
            "Time the model took to predict one batch.",
            BATCH_DURATION_BUCKETS,
        )
        self.queue_rows = gauge(prefix + "queue_rows", "Rows waiting in the model version's batching queue.")
        self.replicas = gauge(prefix + "replicas", "Replicas holding the model version.")
        self.load_seconds = gauge(prefix + "model_load_seconds", "Time it took to load the model version.")
        self.payload_log_rows = Counter(
            prefix + "payload_log_rows",
            "Payload log rows written to the artifact store, or dropped (write failed, or buffer full).",
            ("outcome",),
            registry=self.registry,
        )
        for outcome in ("written", "dropped"):
            self.payload_log_rows.labels(outcome)  # shown at zero
        self.payload_log_errors = Counter(
            prefix + "payload_log_errors", "Failed payload log writes.", registry=self.registry
        )
        shadow_labels = (*model_labels, "shadow_version")
        self.shadow_requests = counter(
            prefix + "shadow_requests",
            "Requests mirrored to a shadow version, by outcome: answered, failed, or dropped (queue full).",
            (*shadow_labels, "outcome"),
        )
        self.shadow_rows = counter(
            prefix + "shadow_rows",
            "Rows of mirrored requests whose shadow output agreed with the answer given, or disagreed.",
            (*shadow_labels, "outcome"),
        )
        self.shadow_agreement = Gauge(
            prefix + "shadow_agreement",
            "Fraction of mirrored rows whose shadow output agreed with the answer given, since the start.",
            shadow_labels,
            registry=self.registry,
        )
        self._agreement: dict[tuple[str, str, str], list[int]] = {}  # labels -> [agreed rows, rows]
        self._models: dict[ServedModel, ModelMetrics] = {}
        self.registry.register(AutoscaleCollector(self._models))
        self._endpoints: dict[tuple[ServedModel, str], EndpointMetrics] = {}
        self._unknown: dict[str, EndpointMetrics] = {}

    def model(self, model: ServedModel) -> ModelMetrics:
        """The series of `model` (registered on first use, so they show at zero before any request)."""
        found = self._models.get(model)
        if found is None:
            found = self._models[model] = ModelMetrics(self, model)
        return found

    def endpoint(self, model: ServedModel, protocol: str) -> EndpointMetrics:
        found = self._endpoints.get((model, protocol))
        if found is None:
            labels = (model.name, model.version, protocol)
            found = self._endpoints[model, protocol] = EndpointMetrics(self, self.model(model), labels)
        return found

    def unknown(self, protocol: str) -> EndpointMetrics:
        """Requests that name no served model (404): counted without model and version."""
        found = self._unknown.get(protocol)
        if found is None:
            found = self._unknown[protocol] = EndpointMetrics(self, None, ("", "", protocol))
        return found

    def forget(self, model: ServedModel) -> None:
        """Stop reporting the gauges of `model`, which was drained (its counters and histograms stay)."""
        if self._models.pop(model, None) is None:
            return
        for key in [key for key in self._endpoints if key[0] is model]:
            del self._endpoints[key]
        labels = (model.name, model.version)
        if any(m.name == model.name and m.version == model.version for m in self._models):
            return  # the same version is served again by a new object, which set the gauges itself
        for gauge in (self.in_flight, self.queue_rows, self.replicas):
            try:
                gauge.remove(*labels)
            except KeyError:
                pass

    def shadow_request(self, model: ServedModel, shadow: ServedModel, outcome: str) -> None:
        """Count one request of `model` mirrored to `shadow`: answered, failed or dropped."""
        self.shadow_requests.labels(model.name, model.version, shadow.version, outcome).inc()

    def shadow_compared(self, model: ServedModel, shadow: ServedModel, rows: int, agreed: int) -> None:
        """Count how many of a mirrored request's `rows` the shadow answered as `model` did."""
        labels = (model.name, model.version, shadow.version)
        self.shadow_rows.labels(*labels, "agreed").inc(agreed)
        self.shadow_rows.labels(*labels, "disagreed").inc(rows - agreed)
        totals = self._agreement.setdefault(labels, [0, 0])
        totals[0] += agreed
        totals[1] += rows
        if totals[1]:
            self.shadow_agreement.labels(*labels).set(totals[0] / totals[1])

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
