"""The command spans and metrics: each service opens ``command.<name>`` and nothing else does."""

from __future__ import annotations

import time
import uuid
from typing import Any

from opentelemetry import metrics, trace

from bank.domain import DomainError
from eventstore import ActiveSpan, record_failure

from .errors import ServiceError

tracer = trace.get_tracer("bank.services")
meter = metrics.get_meter("bank.services")
# Bucket bounds in seconds (the SDK's default ones, 0 to 10,000, are meant for
# milliseconds: every command would fall in the first bucket). A command takes about a
# millisecond; a lock wait can take DB_LOCK_TIMEOUT_MS (5 s by default).
COMMAND_DURATION_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
command_duration = meter.create_histogram(
    "bank.command.duration",
    unit="s",
    description="command duration, by command and outcome",
    explicit_bucket_boundaries_advisory=COMMAND_DURATION_BUCKETS,
)


class command_span(ActiveSpan):  # noqa: N801 - used like the function it replaced
    """``with command_span(name, aggregate_id, expected_version) as span:`` one command.

    A refusal is an error span carrying the rule's code; every command records its duration
    by outcome (while its span is current, so the measurement can carry an exemplar).
    """

    __slots__ = ("_name", "_started")

    def __init__(
        self,
        name: str,
        aggregate_id: uuid.UUID | None,
        expected_version: int | None,
        amount_cents: int | None = None,
    ) -> None:
        attributes: dict[str, Any] = {"command": name, "event_sourcing.operation": "command"}
        if aggregate_id is not None:
            attributes["account_id"] = attributes["aggregate_id"] = str(aggregate_id)
        if amount_cents is not None and type(amount_cents) is int:
            attributes["amount_cents"] = amount_cents
        if expected_version is not None:
            attributes["expected_version"] = expected_version
        self._name = name
        self._started = time.perf_counter()
        super().__init__(tracer, f"command.{name}", attributes)

    def finish(self, exc: BaseException | None) -> None:
        span = self.span
        if exc is None:
            outcome = "ok"
        elif isinstance(exc, DomainError | ServiceError):
            outcome = "refused" if isinstance(exc, DomainError) else exc.code
            if span.is_recording():
                span.set_attribute("error.code", exc.code)
            record_failure(span, exc, f"{exc.code}: {exc}")
        else:
            outcome = "error"
            record_failure(span, exc, type(exc).__name__)
        command_duration.record(
            time.perf_counter() - self._started, {"command": self._name, "outcome": outcome}
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
