"""The command spans and metrics: each service opens ``command.<name>`` and nothing else does."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from bank.domain import DomainError

from .errors import ServiceError

tracer = trace.get_tracer("bank.services")
meter = metrics.get_meter("bank.services")
command_duration = meter.create_histogram(
    "bank.command.duration", unit="s", description="command duration, by command and outcome"
)


@contextmanager
def command_span(
    name: str, aggregate_id: uuid.UUID | None, expected_version: int | None
) -> Iterator[trace.Span]:
    """The span of one command; a refusal is an error span carrying the rule's code."""
    attributes: dict[str, Any] = {"command": name, "event_sourcing.operation": "command"}
    if aggregate_id is not None:
        attributes["aggregate_id"] = str(aggregate_id)
    if expected_version is not None:
        attributes["expected_version"] = expected_version
    started = time.perf_counter()
    outcome = "ok"
    with tracer.start_as_current_span(
        f"command.{name}",
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except (DomainError, ServiceError) as exc:
            outcome = "refused" if isinstance(exc, DomainError) else exc.code
            span.set_attribute("error.code", exc.code)
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{exc.code}: {exc}"))
            raise
        except Exception as exc:
            outcome = "error"
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            command_duration.record(
                time.perf_counter() - started, {"command": name, "outcome": outcome}
            )


def trace_metadata() -> dict[str, str]:
    """The current span's trace and span ids, for the events' metadata."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }
