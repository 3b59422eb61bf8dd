"""A real OTLP/HTTP export: a receiver on loopback decodes what a manage.py process sends."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT, manage_env, run_manage
from tests.telemetry.receivers import GrpcReceiver, Receiver


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


@pytest.mark.parametrize(
    "protocol, receiver_class, export_process",
    [
        ("http/protobuf", Receiver, "true"),
        ("grpc", GrpcReceiver, "true"),
        ("http/protobuf", Receiver, "false"),
        ("grpc", GrpcReceiver, "false"),
    ],
    ids=["http via helper", "grpc via helper", "http in-process", "grpc in-process"],
)
def test_spans_and_metrics_reach_an_otlp_receiver(
    tmp_path, protocol, receiver_class, export_process
):
    with receiver_class() as receiver:
        otel = {
            "TELEMETRY_EXPORT_PROCESS": export_process,
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
    resource = receiver.traces[0].resource_spans[0].resource
    attributes = {a.key: a.value.string_value for a in resource.attributes}
    assert attributes["service.name"] == "ledgerline-test"
    assert attributes["deployment.environment"] == "ci"
    assert {"eventstore.events_appended", "bank.command.duration"} <= receiver.metric_names()
