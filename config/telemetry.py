"""OpenTelemetry, set up once at start-up (manage.py, WSGI and ASGI) from the OTEL_* variables.

The specification's variables choose the exporters: ``OTEL_TRACES_EXPORTER`` and
``OTEL_METRICS_EXPORTER`` (``otlp``, ``console`` or ``none``; ``otlp`` over
``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf``, the default, or ``grpc``), the sampler
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (read by the SDK's
``TracerProvider``), the service name and resource ``OTEL_SERVICE_NAME`` /
``OTEL_RESOURCE_ATTRIBUTES``. One difference from the specification, kept from the first
release: with nothing configured (no exporter variable and no OTLP endpoint) nothing is
installed, so the API's no-op tracer and meter stay in place and nothing tries to connect.
An OTLP endpoint alone means ``otlp`` for every signal, logs included.

``OTEL_LOGS_EXPORTER`` (``otlp``, ``console``, ``none``; the same default) adds a handler
to the root logger, from ``config.otlp_logs``: the Python SDK's logs signal is not public
API yet, and that module says how it does without it. Whatever it is, log records still go
to standard error, one line each, with the trace and span ids of the span they were
written in (``TraceIdFilter``).

Django requests and the ORM's psycopg calls are instrumented; the event store makes the
database spans of its own statements (``eventstore.telemetry.statements``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

_configured = False

EXPORTERS = ("otlp", "console", "none")


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def endpoint_configured(signal: str = "") -> bool:
    """Whether an OTLP endpoint is set (for one signal: TRACES, METRICS or LOGS, or any)."""
    names = ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    for one in (signal,) if signal else ("TRACES", "METRICS", "LOGS"):
        names.append(f"OTEL_EXPORTER_OTLP_{one}_ENDPOINT")
    return any(_env(name) for name in names)


def exporter(signal: str) -> str:
    """The exporter chosen for a signal (TRACES, METRICS, LOGS): otlp, console or none.

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
    logs = exporter("LOGS")
    if traces == "none" and meters == "none" and logs == "none":
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
    if logs != "none":
        _install_log_handler(logs, resource)
    if traces != "none" or meters != "none":
        _instrument_libraries(traces=traces != "none")
    _configured = True
    return True


_log_handler: logging.Handler | None = None


def _install_log_handler(kind: str, resource: Resource) -> None:
    from django.apps import apps

    from config import otlp_logs

    if kind == "console":
        make: Callable[[], logging.Handler] = partial(otlp_logs.ConsoleHandler, resource)
    else:
        make = otlp_logs.otlp_handler(resource, grpc=_grpc("LOGS"))

    def attach() -> None:
        global _log_handler
        _log_handler = make()
        logging.getLogger().addHandler(_log_handler)

    if apps.ready or apps.loading:  # django.setup() has configured logging already
        attach()
        return
    # manage.py, wsgi.py and asgi.py set telemetry up before django.setup(), whose
    # dictConfig(LOGGING) then closes every handler made so far and empties the root
    # logger's list. Django sends no signal when its setup is done; the first model class
    # it prepares comes right after its logging configuration (apps.populate), so the
    # handler is made and attached then.
    from django.db.models.signals import class_prepared

    def attach_once(**kwargs: Any) -> None:
        class_prepared.disconnect(dispatch_uid=__name__)
        attach()

    class_prepared.connect(attach_once, weak=False, dispatch_uid=__name__)


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
    """Flush and stop the exporters (for short-lived commands); the logs last, with what
    the others logged while stopping."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()
    meter_provider = metrics.get_meter_provider()
    if hasattr(meter_provider, "shutdown"):
        meter_provider.shutdown()
    if _log_handler is not None:
        logging.getLogger().removeHandler(_log_handler)
        _log_handler.close()


class TraceIdFilter(logging.Filter):
    """Adds ``trace_id`` (and ``span_id``) to every log record, so a line can be found from a trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else "-"
        record.span_id = format(context.span_id, "016x") if context.is_valid else "-"
        return True
