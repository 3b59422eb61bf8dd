"""``OTEL_LOGS_EXPORTER``: log records reach an OTLP receiver, or standard output as JSON.

The request tests run in a process of their own (one tracer provider per process): a
request to an API whose database has no tables yet, so that the product logs
"database unavailable" inside the request's server span. The batching tests use the
handler directly, with a receiver or a fake sender.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time

import pytest
from opentelemetry import trace
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.sdk.resources import Resource

from config import otlp_logs, telemetry
from tests.support import ROOT, manage_env
from tests.telemetry.test_otlp_export import GrpcReceiver, Receiver

# Telemetry set up before django.setup(), as manage.py, wsgi.py and asgi.py do.
REQUEST = """
from config import telemetry
telemetry.setup()
import django
django.setup()
from django.test import Client
response = Client(HTTP_HOST="localhost").get(
    "/api/accounts/", HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef"
)
print("status", response.status_code, file=__import__("sys").stderr)
telemetry.shutdown()
"""
UNAVAILABLE = "database unavailable: no such table: authtoken_token"


def run_script(tmp_path, code, **otel):
    env = manage_env(f"sqlite:///{tmp_path / 'no-tables.sqlite3'}", **otel)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def wait_for(condition, *, timeout=60.0, what="the receiver"):
    """Poll until ``condition()`` is truthy; fail after a generous deadline."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: nothing after {timeout} s")
        time.sleep(0.02)
    return found


def server_span(receiver):
    spans = wait_for(lambda: [s for s in receiver.spans() if s.kind == s.SPAN_KIND_SERVER])
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


@pytest.mark.parametrize(
    "protocol, receiver_class",
    [("http/protobuf", Receiver), ("grpc", GrpcReceiver)],
    ids=["http", "grpc"],
)
def test_the_log_records_of_a_request_reach_an_otlp_receiver_in_its_trace(
    tmp_path, protocol, receiver_class
):
    with receiver_class() as receiver:
        result = run_script(
            tmp_path,
            REQUEST,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="none",
            OTEL_SERVICE_NAME="ledgerline-test",
        )
        records = wait_for(
            lambda: [r for r in receiver.log_records() if r[2].body.string_value == UNAVAILABLE]
        )
        server = server_span(receiver)
    assert "status 503" in result.stderr
    [(resource, scope, record)] = records
    assert resource["service.name"] == "ledgerline-test"
    assert scope == "bank.api"
    assert record.severity_number == SeverityNumber.SEVERITY_NUMBER_WARN
    assert record.severity_text == "WARNING"
    assert record.trace_id == server.trace_id
    assert record.span_id == server.span_id
    attributes = {a.key: a.value for a in record.attributes}
    assert attributes["code.file.path"].string_value.endswith("bank/api/problems.py")
    # Django's own line about the answer comes after the server span has ended.
    [(_, _, answered)] = [
        r for r in receiver.log_records() if r[2].body.string_value.startswith("Service Unav")
    ]
    assert answered.severity_number == SeverityNumber.SEVERITY_NUMBER_ERROR
    assert answered.trace_id == b""
    # Standard error keeps its one line per record, with the same trace id.
    lines = [line for line in result.stderr.splitlines() if UNAVAILABLE in line]
    assert len(lines) == 1
    assert f"trace_id={server.trace_id.hex()} span_id={server.span_id.hex()}" in lines[0]


def test_the_console_exporter_prints_one_json_line_per_record(tmp_path):
    with Receiver() as receiver:  # the trace, to compare the printed trace id with
        result = run_script(
            tmp_path,
            REQUEST,
            OTEL_LOGS_EXPORTER="console",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://127.0.0.1:{receiver.port}/v1/traces",
            OTEL_METRICS_EXPORTER="none",
        )
        server = server_span(receiver)
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    [unavailable] = [p for p in printed if p["body"] == UNAVAILABLE]
    assert unavailable["severity_text"] == "WARNING"
    assert unavailable["severity_number"] == 13
    assert unavailable["trace_id"] == server.trace_id.hex()
    assert unavailable["span_id"] == server.span_id.hex()
    assert unavailable["resource"]["attributes"]["service.name"] == "ledgerline"
    assert unavailable["timestamp"].endswith("Z")
    assert {p["scope"]["name"] for p in printed} >= {"bank.api", "django.request", "axes.apps"}


def test_a_multi_line_record_is_one_json_line(capsys):
    handler = otlp_logs.ConsoleHandler(Resource.create({"service.name": "console-test"}))
    logger = isolated_logger("tests.console", handler)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("two\nlines", extra={"n": 7, "tags": ("a", "b"), "skipped": object()})
    logger.info("plain")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert first["body"] == "two\nlines"
    assert first["severity_number"] == 17
    assert first["attributes"]["n"] == 7
    assert first["attributes"]["tags"] == ["a", "b"]
    assert "skipped" not in first["attributes"]
    assert first["attributes"]["exception.type"] == "ValueError"
    assert "raise ValueError" in first["attributes"]["exception.stacktrace"]
    assert first["trace_id"] is None
    assert second["body"] == "plain"
    assert second["resource"]["attributes"]["service.name"] == "console-test"


PROBE = """
import logging, os
from config import telemetry
on = telemetry.setup()
import django
django.setup()
print("probe", on, [type(h).__name__ for h in logging.getLogger().handlers])
"""


@pytest.mark.parametrize(
    "otel, expected",
    [
        ({}, "probe False ['StreamHandler']"),
        ({"OTEL_LOGS_EXPORTER": "none"}, "probe False ['StreamHandler']"),
        (
            {"OTEL_LOGS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "console"},
            "probe True ['StreamHandler']",
        ),
        ({"OTEL_LOGS_EXPORTER": "console"}, "probe True ['StreamHandler', 'ConsoleHandler']"),
    ],
    ids=["nothing-set", "none", "none-with-traces", "console"],
)
def test_none_or_nothing_installs_no_log_handler(tmp_path, otel, expected):
    result = run_script(tmp_path, PROBE, **otel)
    assert result.stdout.splitlines()[-1] == expected, result.stderr


def test_an_endpoint_alone_means_otlp_for_logs_too(monkeypatch):
    for name in ("OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", raising=False)
    assert telemetry.exporter("LOGS") == "none"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert telemetry.exporter("LOGS") == "otlp"
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    assert telemetry.exporter("LOGS") == "none"
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "file")
    with pytest.raises(ValueError, match="OTEL_LOGS_EXPORTER='file': use one of otlp"):
        telemetry.exporter("LOGS")


def isolated_logger(name, handler):
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


@pytest.fixture
def otlp_env(monkeypatch):
    for name in (
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
        "OTEL_BLRP_MAX_QUEUE_SIZE",
        "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_BLRP_EXPORT_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "50")
    return monkeypatch


def test_a_batch_answered_503_is_sent_again_and_arrives(otlp_env):
    with Receiver(log_statuses=(503,)) as receiver:
        otlp_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}/")
        otlp_env.setenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-tenant=bank%20one")
        handler = otlp_logs.otlp_handler(
            Resource.create({"service.name": "retry-test"}), grpc=False
        )()
        logger = isolated_logger("tests.otlp_logs.retry", handler)
        try:
            with trace.get_tracer(__name__).start_as_current_span("logging") as span:
                logger.warning("kept %s", "after a retry")
            records = wait_for(receiver.log_records)
        finally:
            handler.close()
    assert receiver.paths == ["/v1/logs", "/v1/logs"]  # the 503, then the one kept
    assert receiver.headers[1]["content-type"] == "application/x-protobuf"
    assert receiver.headers[1]["x-tenant"] == "bank one"
    [(resource, scope, record)] = records
    assert resource["service.name"] == "retry-test"
    assert scope == "tests.otlp_logs.retry"
    assert record.body.string_value == "kept after a retry"
    assert record.severity_number == SeverityNumber.SEVERITY_NUMBER_WARN
    # The session's tracer provider (tests/conftest.py) records the span.
    assert record.trace_id == span.get_span_context().trace_id.to_bytes(16, "big")
    assert record.span_id == span.get_span_context().span_id.to_bytes(8, "big")


def test_a_failing_receiver_is_reported_once_on_stderr_until_it_recovers(otlp_env, capsys):
    with Receiver(log_statuses=(400, 400)) as receiver:
        otlp_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
        handler = otlp_logs.otlp_handler(Resource.create(), grpc=False)()
        logger = isolated_logger("tests.otlp_logs.failing", handler)
        try:
            for message in ("refused", "refused again", "accepted"):
                logger.error(message)
                handler.flush()
            wait_for(receiver.log_records)
        finally:
            handler.close()
    err = capsys.readouterr().err
    assert err.count("OTLP logs: export failed (HTTP 400") == 1, err
    assert err.count("OTLP logs: export works again") == 1, err
    assert [r.body.string_value for _, _, r in receiver.log_records()] == ["accepted"]


class HeldSender:
    """A fake collector whose first export waits until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.bodies: list[list[str]] = []

    def __call__(self, request, timeout):
        self.entered.set()
        self.release.wait()
        self.bodies.append(
            [
                record.body.string_value
                for resource in request.resource_logs
                for scope in resource.scope_logs
                for record in scope.log_records
            ]
        )


def test_a_full_queue_drops_the_oldest_records_without_blocking_and_counts_them(capsys):
    sender = HeldSender()
    handler = otlp_logs.BatchingHandler(
        sender, Resource.create(), max_queue_size=4, max_export_batch_size=2, schedule_delay=3600
    )
    logger = isolated_logger("tests.otlp_logs.full", handler)
    try:
        logger.info("a")
        logger.info("b")  # a full batch: the thread takes a and b, and its export waits
        assert sender.entered.wait(60)
        more = threading.Thread(target=lambda: [logger.info(c) for c in "cdefghijkl"])
        more.start()
        more.join(60)  # logging must not wait for the held export
        assert not more.is_alive()
        assert handler.dropped == 6
        sender.release.set()
        handler.flush()
    finally:
        sender.release.set()
        handler.close()
    assert sender.bodies == [["a", "b"], ["i", "j"], ["k", "l"]]
    assert "OTLP logs: 6 records dropped (the queue of 4 was full)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "level, number",
    [
        (logging.DEBUG, SeverityNumber.SEVERITY_NUMBER_DEBUG),
        (logging.INFO, SeverityNumber.SEVERITY_NUMBER_INFO),
        (21, SeverityNumber.SEVERITY_NUMBER_INFO2),
        (25, SeverityNumber.SEVERITY_NUMBER_INFO4),
        (logging.WARNING, SeverityNumber.SEVERITY_NUMBER_WARN),
        (logging.ERROR, SeverityNumber.SEVERITY_NUMBER_ERROR),
        (logging.CRITICAL, SeverityNumber.SEVERITY_NUMBER_FATAL),
        (5, SeverityNumber.SEVERITY_NUMBER_UNSPECIFIED),
        (60, SeverityNumber.SEVERITY_NUMBER_FATAL4),
    ],
)
def test_python_levels_map_to_the_logs_data_model_severities(level, number):
    assert otlp_logs.severity_number(level) == number


def test_an_endpoint_that_does_not_speak_http_is_reported_and_the_exporter_lives_on(
    otlp_env, capsys
):
    """E.g. the gRPC port given as the HTTP endpoint: http.client raises no OSError there."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    stop = threading.Event()

    def answer_garbage():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00not http at all\r\n\r\n")

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    otlp_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    otlp_env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    handler = otlp_logs.otlp_handler(Resource.create(), grpc=False)()
    logger = isolated_logger("tests.otlp_logs.garbage", handler)
    try:
        logger.error("first")
        handler.flush()
        with Receiver() as receiver:  # the collector comes back on a real port
            otlp_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
            second = otlp_logs.otlp_handler(Resource.create(), grpc=False)()
            logger.handlers[:] = [second]
            logger.error("second")
            records = wait_for(receiver.log_records)
            second.close()
        logger.handlers[:] = [handler]
        logger.error("third")  # the first handler's thread is still alive and still reports
        handler.flush()
    finally:
        handler.close()
        stop.set()
        thread.join(5)
        server.close()
    assert [r.body.string_value for _, _, r in records] == ["second"]
    err = capsys.readouterr().err
    assert "not an HTTP answer" in err and "is this the OTLP/HTTP port?" in err, err
