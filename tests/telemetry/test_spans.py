"""Spans, trace ids in events, links and metrics, with the SDK's in-memory exporters."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import Group, User
from django.test import override_settings
from opentelemetry.trace import StatusCode
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

import eventstore as es
from bank.services import Actor
from bank.services import accounts as svc
from bank.services.telemetry import COMMAND_DURATION_BUCKETS
from projections import runner
from tests.support import ensure_roles

pytestmark = pytest.mark.django_db

OUR_SCOPES = {"eventstore", "bank.services", "projections"}
ACTOR = Actor.system("tests")


@pytest.fixture
def teller():
    ensure_roles()
    user = User.objects.create_user("tracy")
    user.groups.add(Group.objects.get(name="tellers"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def ours(span):
    return span.instrumentation_scope.name in OUR_SCOPES


def children(all_spans, parent):
    return [
        s for s in all_spans if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def tree(all_spans, root):
    return {s.name: tree(all_spans, s) for s in children(all_spans, root) if ours(s)}


def test_an_http_deposit_yields_the_contract_span_tree(teller, spans):
    account = svc.open_account(holder_name="Tree", initial_balance_cents=100, actor=ACTOR)
    spans.clear()
    response = teller.post(
        f"/api/accounts/{account.id}/deposit/", {"amount_cents": 5}, format="json"
    )
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.name == "POST api/accounts/<uuid:account_id>/deposit/"]
    command_tree = tree(finished, server)
    assert list(command_tree) == ["command.deposit"]
    assert list(command_tree["command.deposit"]) == [
        "snapshot_store.load",
        "event_store.load_events_from_version",
        "event_store.append_events",
    ]
    # Each store span has its statement's client span beneath it (the stream lock's beside
    # the snapshot's, on PostgreSQL's locked path), though they share one round trip.
    deposit = command_tree["command.deposit"]
    assert set(deposit["snapshot_store.load"]) - {"SELECT"} == {"SELECT snapshots"}
    assert list(deposit["event_store.load_events_from_version"]) == ["SELECT events"]
    assert "INSERT events" in deposit["event_store.append_events"]
    (snapshot_select,) = [s for s in finished if s.name == "SELECT snapshots"]
    assert snapshot_select.attributes["db.operation.name"] == "SELECT"
    assert snapshot_select.attributes["db.collection.name"] == "snapshots"
    assert snapshot_select.attributes["db.query.text"].startswith("SELECT version, schema_version")
    load = next(s for s in finished if s.name == "event_store.load_events_from_version")
    (events_select,) = children(finished, load)
    assert events_select.attributes["db.collection.name"] == "events"
    assert "%s" in events_select.attributes["db.query.text"]
    assert load.attributes["aggregate_id"] == str(account.id)
    assert load.attributes["from_version"] == 0  # no snapshot yet
    assert load.attributes["events_count"] == 1
    assert load.attributes["db.system"] in ("sqlite", "postgresql")
    snapshot_load = next(s for s in finished if s.name == "snapshot_store.load")
    assert snapshot_load.attributes["event_sourcing.optimization"] == "snapshot"
    assert snapshot_load.attributes["aggregate_id"] == str(account.id)
    (insert,) = [s for s in finished if s.name == "INSERT events"]
    assert insert.kind.name == "CLIENT"
    assert insert.attributes["db.operation.name"] == "INSERT"
    assert insert.attributes["db.collection.name"] == "events"
    assert insert.attributes["db.query.text"].startswith("INSERT INTO events (")
    assert "%s" in insert.attributes["db.query.text"]  # the text without the values
    assert insert.attributes["db.system.name"] in ("sqlite", "postgresql")
    if insert.attributes["db.system.name"] == "postgresql":
        assert insert.attributes["server.port"] > 0 and insert.attributes["server.address"]
    command = next(s for s in finished if s.name == "command.deposit")
    assert command.attributes["aggregate_id"] == str(account.id)
    assert command.attributes["account_id"] == str(account.id)
    assert command.attributes["amount_cents"] == 5
    assert command.attributes["event_sourcing.operation"] == "command"
    append = next(s for s in finished if s.name == "event_store.append_events")
    assert append.attributes["events_count"] == 1
    assert append.attributes["expected_version"] == 1
    assert append.attributes["event_sourcing.operation"] == "append"
    assert append.attributes["db.system"] in ("sqlite", "postgresql")
    event = es.read_stream(account.id)[-1]
    assert event.metadata["trace_id"] == format(server.context.trace_id, "032x")
    assert event.metadata["span_id"] == format(command.context.span_id, "016x")


@override_settings(SNAPSHOT_INTERVAL=2)
def test_a_deposit_that_crosses_the_snapshot_interval_saves_a_snapshot_in_its_span(spans):
    account = svc.open_account(holder_name="Snap", actor=ACTOR)
    spans.clear()
    svc.deposit(account_id=account.id, amount_cents=1, actor=ACTOR)
    finished = spans.get_finished_spans()
    command = next(s for s in finished if s.name == "command.deposit")
    assert [s.name for s in children(finished, command) if ours(s)] == [
        "snapshot_store.load",
        "event_store.load_events_from_version",
        "event_store.append_events",
        "snapshot_store.save",
    ]
    save = next(s for s in finished if s.name == "snapshot_store.save")
    # The anchor came with the append: the save is one INSERT.
    assert [s.name for s in children(finished, save)] == ["INSERT snapshots"]


def test_a_refused_withdrawal_is_an_error_span_with_the_rule_code(spans):
    account = svc.open_account(holder_name="Poor", actor=ACTOR)
    spans.clear()
    with pytest.raises(Exception, match="exceeds the balance"):
        svc.withdraw(account_id=account.id, amount_cents=5, actor=ACTOR)
    command = next(s for s in spans.get_finished_spans() if s.name == "command.withdraw")
    assert command.status.status_code == StatusCode.ERROR
    assert command.attributes["error.code"] == "insufficient_funds"
    assert any(e.name == "exception" for e in command.events)


def test_a_projection_batch_links_to_the_commands_that_wrote_its_events(spans):
    account = svc.open_account(holder_name="Linked", actor=ACTOR)
    svc.deposit(account_id=account.id, amount_cents=3, actor=ACTOR)
    commands = {
        (s.context.trace_id, s.context.span_id)
        for s in spans.get_finished_spans()
        if s.name.startswith("command.")
    }
    spans.clear()
    runner.catch_up(["balances"])
    batch = next(s for s in spans.get_finished_spans() if s.name == "projection.balances.batch")
    linked = {(link.context.trace_id, link.context.span_id) for link in batch.links}
    assert commands <= linked
    assert batch.attributes["event_sourcing.operation"] == "project"


def test_metrics_count_events_and_time_commands(metric_reader):
    account = svc.open_account(holder_name="Metered", actor=ACTOR)
    svc.deposit(account_id=account.id, amount_cents=3, actor=ACTOR)
    runner.status()
    data = metric_reader.get_metrics_data()
    found = {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    appended = found["eventstore.events_appended"]
    types = {dict(p.attributes)["event_type"] for p in appended.data.data_points}
    assert {"AccountOpened", "MoneyDeposited"} <= types
    durations = found["bank.command.duration"].data.data_points
    assert {(dict(p.attributes)["command"], dict(p.attributes)["outcome"]) for p in durations} >= {
        ("open", "ok"),
        ("deposit", "ok"),
    }
    # Buckets in seconds: with the SDK's default bounds (0, 5, 10, ... 10,000: meant for
    # milliseconds) every command would fall in one bucket.
    for point in durations:
        assert tuple(point.explicit_bounds) == COMMAND_DURATION_BUCKETS
        assert 0 < point.max < COMMAND_DURATION_BUCKETS[-1]
    assert {
        dict(p.attributes)["projection"] for p in found["projection.lag"].data.data_points
    } == {"balances", "transactions"}


def test_log_lines_carry_the_trace_id(caplog):
    from opentelemetry import trace

    from config.telemetry import TraceIdFilter

    logger = logging.getLogger("tests.telemetry")
    with caplog.at_level(logging.INFO, logger="tests.telemetry"):
        with trace.get_tracer("tests").start_as_current_span("outer") as span:
            record = logger.makeRecord(
                "tests.telemetry", logging.INFO, __file__, 1, "hello", (), None
            )
            TraceIdFilter().filter(record)
    assert record.trace_id == format(span.get_span_context().trace_id, "032x")
    outside = logger.makeRecord("tests.telemetry", logging.INFO, __file__, 1, "x", (), None)
    TraceIdFilter().filter(outside)
    assert outside.trace_id == "-"


def test_under_a_dropped_parent_no_span_is_made_and_events_still_carry_the_trace(spans):
    """At 10 % sampling nine traces in ten are dropped at their root: below it, nothing."""
    from opentelemetry import trace

    account = svc.open_account(holder_name="Unsampled", actor=ACTOR)
    dropped = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=0xABC, span_id=0xDEF, is_remote=True, trace_flags=trace.TraceFlags(0)
        )
    )
    spans.clear()
    with trace.use_span(dropped):
        svc.deposit(account_id=account.id, amount_cents=1, actor=ACTOR)
    assert [s.name for s in spans.get_finished_spans() if ours(s)] == []
    event = es.read_stream(account.id)[-1]
    assert event.metadata["trace_id"] == format(0xABC, "032x")
