"""The event store's spans and metrics (no-ops until an OpenTelemetry SDK is installed)."""

from __future__ import annotations

from typing import Any

from django.db import connection
from opentelemetry import metrics, trace

tracer = trace.get_tracer("eventstore")
meter = metrics.get_meter("eventstore")
events_appended = meter.create_counter(
    "eventstore.events_appended", unit="{event}", description="events appended, by event type"
)


def span(name: str, operation: str, **attributes: Any) -> Any:
    """A span for one store operation, with the attributes every store span carries.

    Returns the tracer's own context manager (no wrapper of ours: this is the hot path).
    """
    attributes["db.system"] = connection.vendor
    attributes["event_sourcing.operation"] = operation
    return tracer.start_as_current_span(name, attributes=attributes)
