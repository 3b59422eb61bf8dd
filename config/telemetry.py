"""OpenTelemetry, set up once at start-up (manage.py, WSGI and ASGI) from the OTEL_* variables.

The specification's variables choose the exporters: ``OTEL_TRACES_EXPORTER`` and
``OTEL_METRICS_EXPORTER`` (``otlp``, ``console`` or ``none``; ``otlp`` over
``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf``, the default, or ``grpc``), the sampler
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (read by the SDK's
``TracerProvider``), the service name and resource ``OTEL_SERVICE_NAME`` /
``OTEL_RESOURCE_ATTRIBUTES``. One difference from the specification, kept from the first
release: with nothing configured (no exporter variable and no OTLP endpoint) nothing is
installed, so the API's no-op tracer and meter stay in place and nothing tries to connect.
An OTLP endpoint alone means ``otlp`` for both signals.

``OTEL_LOGS_EXPORTER``: the Python SDK's logs signal is not public API yet (its module is
marked private), so this project does not use it; log records go to
standard error, one line each, with the trace and span ids of the span they were written
in (``TraceIdFilter``), for a collector's file or container log receiver to pick up.

Django requests and the ORM's psycopg calls are instrumented; the event store makes the
database spans of its own statements (``eventstore.telemetry.statements``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import metrics, trace

_configured = False
log = logging.getLogger("config.telemetry")

EXPORTERS = ("otlp", "console", "none")


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def endpoint_configured(signal: str = "") -> bool:
    """Whether an OTLP endpoint is set (for one signal: TRACES or METRICS, or either)."""
    names = ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    for one in (signal,) if signal else ("TRACES", "METRICS"):
        names.append(f"OTEL_EXPORTER_OTLP_{one}_ENDPOINT")
    return any(_env(name) for name in names)


def exporter(signal: str) -> str:
    """The exporter chosen for a signal (TRACES, METRICS): otlp, console or none.

    Unset: ``otlp`` when an OTLP endpoint is configured, else ``none``.

    Raises:
        ValueError: a value this product does not support (the message names it and the
            supported ones; a comma-separated list of exporters is not supported).
    """
    name = f"OTEL_{signal}_EXPORTER"
    value = _env(name).lower()
    if not value:
        return "otlp" if endpoint_configured(signal) else "none"
    if value not in EXPORTERS:
        raise ValueError(f"{name}={value!r}: use one of {', '.join(EXPORTERS)}")
    return value


def setup(*, span_exporter: Any = None, metric_reader: Any = None, batch: bool = False) -> bool:
    """Install the SDK when an exporter is configured (or given, in tests); once.

    Returns:
        Whether telemetry is on.
    """
    global _configured
    if _configured:
        return True
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return False
    traces = "given" if span_exporter is not None else exporter("TRACES")
    meters = "given" if metric_reader is not None else exporter("METRICS")
    if _env("OTEL_LOGS_EXPORTER").lower() not in ("", "none"):
        log.warning(
            "OTEL_LOGS_EXPORTER=%s is not supported (the Python SDK's logs are still private "
            "API); log lines go to standard error with their trace ids",
            _env("OTEL_LOGS_EXPORTER"),
        )
    if traces == "none" and meters == "none":
        return False
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "ledgerline"}))
    if traces != "none":
        provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
        if traces == "given":
            processor = BatchSpanProcessor if batch else SimpleSpanProcessor
            provider.add_span_processor(processor(span_exporter))
        elif traces == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(_otlp_span_exporter()))
        trace.set_tracer_provider(provider)
    if meters != "none":
        if meters == "given":
            reader = metric_reader
        elif meters == "console":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            reader = PeriodicExportingMetricReader(ConsoleMetricExporter())
        else:
            reader = PeriodicExportingMetricReader(_otlp_metric_exporter())
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    _instrument_libraries(traces=traces != "none")
    _configured = True
    return True


PROTOCOLS = ("http/protobuf", "grpc")


def _grpc(signal: str) -> bool:
    name = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    if not _env(name):
        name = "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = _env(name).lower() or "http/protobuf"
    if protocol not in PROTOCOLS:
        raise ValueError(f"{name}={protocol!r}: use one of {', '.join(PROTOCOLS)}")
    return protocol == "grpc"


def _otlp_span_exporter() -> Any:
    if _grpc("TRACES"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _otlp_metric_exporter() -> Any:
    if _grpc("METRICS"):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def _instrument_libraries(*, traces: bool) -> None:
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    if not DjangoInstrumentor().is_instrumented_by_opentelemetry:
        DjangoInstrumentor().instrument()  # server spans, and the HTTP server metrics
    if not traces or _env("OTEL_PYTHON_DB_SPANS").lower() in ("false", "0", "off"):
        return  # database calls stay inside our own spans' timing, without spans of their own
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    if not PsycopgInstrumentor().is_instrumented_by_opentelemetry:
        PsycopgInstrumentor().instrument(enable_commenter=False)


def shutdown() -> None:
    """Flush and stop the exporters (for short-lived commands)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()
    meter_provider = metrics.get_meter_provider()
    if hasattr(meter_provider, "shutdown"):
        meter_provider.shutdown()


class TraceIdFilter(logging.Filter):
    """Adds ``trace_id`` (and ``span_id``) to every log record, so a line can be found from a trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else "-"
        record.span_id = format(context.span_id, "016x") if context.is_valid else "-"
        return True
