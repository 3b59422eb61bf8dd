"""A real OTLP/HTTP export: a receiver on loopback decodes what a manage.py process sends."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support import ROOT, manage_env, run_manage


class Receiver:
    """A minimal OTLP/HTTP collector: keeps every decoded request.

    ``log_statuses``: the HTTP statuses to answer the next requests to ``/v1/logs`` with,
    in turn, before it answers 200 (and keeps the request) again.
    """

    def __init__(self, port: int = 0, *, log_statuses: tuple[int, ...] = ()) -> None:
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.logs: list[ExportLogsServiceRequest] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.log_statuses = list(log_statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path == "/v1/logs" and receiver.log_statuses:
                    self.send_response(receiver.log_statuses.pop(0))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == "/v1/logs":
                    request = ExportLogsServiceRequest()
                    request.ParseFromString(body)
                    receiver.logs.append(request)
                    answer = ExportLogsServiceResponse().SerializeToString()
                elif self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver.traces.append(request)
                    answer = ExportTraceServiceResponse().SerializeToString()
                else:
                    request = ExportMetricsServiceRequest()
                    request.ParseFromString(body)
                    receiver.metrics.append(request)
                    answer = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def span_names(self) -> set[str]:
        return {
            span.name
            for request in self.traces
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        }

    def metric_names(self) -> set[str]:
        return {
            metric.name
            for request in self.metrics
            for resource in request.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    def log_records(self) -> list[tuple[dict[str, str], str, Any]]:
        """Each log record received, with its resource's attributes and its scope's name."""
        return [
            (
                {a.key: a.value.string_value for a in resource.resource.attributes},
                scope.scope.name,
                record,
            )
            for request in list(self.logs)
            for resource in request.resource_logs
            for scope in resource.scope_logs
            for record in scope.log_records
        ]

    def spans(self) -> list[Any]:
        return [
            span
            for request in list(self.traces)
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]


def run_with(tmp_path, *args, otel_env):
    """manage.py on a throw-away SQLite file, with exactly the given OTEL_* variables."""
    return run_manage(
        manage_env(f"sqlite:///{tmp_path / 'otel.sqlite3'}", **otel_env), *args, timeout=120
    )


def test_with_no_endpoint_nothing_is_sent_anywhere(tmp_path):
    try:
        receiver = Receiver(4318)  # the OTLP/HTTP default: it must hear nothing
    except OSError:
        pytest.fail("port 4318 is taken; this test needs it free to prove nothing is sent")
    with receiver:
        run_with(tmp_path, "migrate", "-v", "0", otel_env={})
        run_with(tmp_path, "seed_demo", "--events", "20", "-v", "0", otel_env={})
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings');"
                "django.setup(); from config import telemetry; print(telemetry.setup())",
            ],
            cwd=ROOT,
            env=manage_env(f"sqlite:///{tmp_path / 'otel.sqlite3'}"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert probe.stdout.strip() == "False", probe.stderr
    assert receiver.paths == []


class GrpcReceiver:
    """A minimal OTLP/gRPC collector (the protocol's own services), on loopback."""

    def __init__(self) -> None:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.logs: list[ExportLogsServiceRequest] = []
        receiver = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 - the generated API
                receiver.traces.append(request)
                return ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                receiver.metrics.append(request)
                return ExportMetricsServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                receiver.logs.append(request)
                return ExportLogsServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> GrpcReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=1)

    span_names = Receiver.span_names
    metric_names = Receiver.metric_names
    log_records = Receiver.log_records
    spans = Receiver.spans


@pytest.mark.parametrize(
    "protocol, receiver_class",
    [("http/protobuf", Receiver), ("grpc", GrpcReceiver)],
    ids=["http", "grpc"],
)
def test_spans_and_metrics_reach_an_otlp_receiver(tmp_path, protocol, receiver_class):
    with receiver_class() as receiver:
        otel = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_SERVICE_NAME": "ledgerline-test",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci",
        }
        run_with(tmp_path, "migrate", "-v", "0", otel_env=otel)
        run_with(tmp_path, "seed_demo", "--events", "30", "-v", "0", otel_env=otel)
        run_with(tmp_path, "rebuild_projections", "-v", "0", otel_env=otel)
    assert {
        "command.open",
        "command.deposit",
        "event_store.append_events",
        "snapshot_store.load",
        "event_store.load_events_from_version",
        "projection.balances.batch",
        "event_store.read_all",
    } <= receiver.span_names()
    # The tree as it arrived: every deposit's store spans under it, each one's statement
    # (a client span) under the store span.
    spans = receiver.spans()
    below: dict[bytes, list[Any]] = {}
    for span in spans:
        below.setdefault(span.parent_span_id, []).append(span)
    deposits = [s for s in spans if s.name == "command.deposit"]
    assert deposits
    for deposit in deposits:
        stores = {s.name: s for s in below.get(deposit.span_id, [])}
        assert {
            "snapshot_store.load",
            "event_store.load_events_from_version",
            "event_store.append_events",
        } <= set(stores)
        for name, statement in (
            ("snapshot_store.load", "SELECT snapshots"),
            ("event_store.load_events_from_version", "SELECT events"),
            ("event_store.append_events", "INSERT events"),
        ):
            client = [s for s in below.get(stores[name].span_id, []) if s.name == statement]
            assert len(client) == 1, (name, [s.name for s in below.get(stores[name].span_id, [])])
            assert client[0].kind == client[0].SPAN_KIND_CLIENT
    resource = receiver.traces[0].resource_spans[0].resource
    attributes = {a.key: a.value.string_value for a in resource.attributes}
    assert attributes["service.name"] == "ledgerline-test"
    assert attributes["deployment.environment"] == "ci"
    assert {"eventstore.events_appended", "bank.command.duration"} <= receiver.metric_names()


def test_the_console_exporter_prints_the_spans(tmp_path):
    """``OTEL_TRACES_EXPORTER=console``: the spans as JSON on standard output."""
    run_with(tmp_path, "migrate", "-v", "0", otel_env={})
    result = run_with(
        tmp_path,
        "seed_demo",
        "--events",
        "5",
        "-v",
        "0",
        otel_env={"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none"},
    )
    assert '"name": "command.open"' in result.stdout
    assert '"name": "event_store.append_events"' in result.stdout


def test_an_unknown_exporter_is_a_clear_error(tmp_path):
    env = manage_env(f"sqlite:///{tmp_path / 'otel.sqlite3'}", OTEL_TRACES_EXPORTER="jaeger")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "OTEL_TRACES_EXPORTER='jaeger': use one of otlp, console, none" in result.stderr


def test_the_resource_and_the_protocol_come_from_the_environment(tmp_path):
    code = (
        "import django; django.setup(); from config import telemetry;"
        "print(telemetry.setup());"
        "from opentelemetry import trace;"
        "print(trace.get_tracer_provider().resource.attributes['service.name'])"
    )

    def run(**otel):
        env = manage_env(f"sqlite:///{tmp_path / 'otel.sqlite3'}", **otel)
        env["DJANGO_SETTINGS_MODULE"] = "config.settings"
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    named = run(OTEL_TRACES_EXPORTER="console", OTEL_RESOURCE_ATTRIBUTES="service.name=payments")
    assert named.stdout.split() == ["True", "payments"], named.stderr
    default = run(OTEL_TRACES_EXPORTER="console")
    assert default.stdout.split() == ["True", "ledgerline"], default.stderr
    wrong = run(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_EXPORTER_OTLP_PROTOCOL="http/json"
    )
    assert wrong.returncode != 0
    assert (
        "OTEL_EXPORTER_OTLP_PROTOCOL='http/json': use one of http/protobuf, grpc" in wrong.stderr
    )
