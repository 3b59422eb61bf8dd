"""The cost of tracing on the deposit command path on PostgreSQL (issues 7 and 15).

Modes, each in its own process (OpenTelemetry allows one provider per process), on the same
database, in one run: tracing off (no SDK: the API's no-op tracer); the stock SDK (our
spans, the store's database spans, the Django and psycopg instrumentation) with a no-op
exporter behind a batch processor; the OTLP/HTTP batch exporter sending to a receiver on
loopback at 100 % sampling; the same at 10 % (``OTEL_TRACES_SAMPLER=
parentbased_traceidratio``, ``OTEL_TRACES_SAMPLER_ARG=0.1``); at 10 % without database
spans (``OTEL_PYTHON_DB_SPANS=false``); and at 0 % (everything installed, nothing sampled:
the floor of any rate). Each mode runs the same deposits through the services; throughput
is compared with tracing off (issue 15's target: 10 % sampling costs at most 5 %).

A baseline without the product, in the same run: the stock SDK alone building a trace of
the same shape (a root, three store spans, a client span under each, with the same
attributes) and exporting it over OTLP/HTTP to the same receiver. Its time per trace, over
the time of an untraced deposit, is what a sampled deposit costs before any of our code,
so a tenth of it is the floor of 10 % sampling's cost on this machine.

And a diagnostic, at 10 % and at 0 %: each deposit under a root span of the bench's own,
timed one by one and split by whether its trace was sampled, which shows where the 10 %
figure's cost is paid: in the sampled deposits themselves, or in every deposit (the batch
exporter's thread encoding the sampled spans holds the interpreter's lock meanwhile).

Run: ``make bench`` or ``.venv/bin/python bench/telemetry_bench.py [--deposits N] [--rounds N]``
(default 5 rounds: one run moves by about ±2 points of the ratio on a small machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

from common import BENCH_DB, PRODUCTION_ENV, ROOT, recreate_database

MODES = (
    "off",
    "noop-exporter",
    "otlp-loopback",
    "otlp-10pct",
    "otlp-10pct-no-db",
    "otlp-0pct",
)
# The environment of each OTLP mode (beside the endpoint).
SAMPLING = {
    "otlp-loopback": {},
    "otlp-10pct": {"OTEL_TRACES_SAMPLER_ARG": "0.1"},
    "otlp-10pct-no-db": {"OTEL_TRACES_SAMPLER_ARG": "0.1", "OTEL_PYTHON_DB_SPANS": "false"},
    "otlp-0pct": {"OTEL_TRACES_SAMPLER_ARG": "0"},
}
# Diagnostic modes (not in the table): each deposit under a root span of the bench's own,
# timed one by one and split by whether its trace was sampled.
SPLIT = {
    "split-10pct": {"OTEL_TRACES_SAMPLER_ARG": "0.1"},
    "split-0pct": {"OTEL_TRACES_SAMPLER_ARG": "0"},
}
SAMPLING.update(SPLIT)
SDK_TRACES = 5000


def sdk_alone(endpoint: str) -> float:
    """Seconds per trace of the deposit's shape, made and exported by the stock SDK alone."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{endpoint}/v1/traces")))
    tracer = provider.get_tracer("baseline")
    command = {
        "command": "deposit",
        "event_sourcing.operation": "command",
        "account_id": "0b6d3a4e-5f0c-4d8e-9b1a-2c3d4e5f6a7b",
        "aggregate_id": "0b6d3a4e-5f0c-4d8e-9b1a-2c3d4e5f6a7b",
        "amount_cents": 1,
    }
    store = {
        "aggregate_id": "0b6d3a4e-5f0c-4d8e-9b1a-2c3d4e5f6a7b",
        "db.system": "postgresql",
        "event_sourcing.operation": "replay",
        "from_version": 0,
        "events_count": 12,
    }
    client = {
        "db.system.name": "postgresql",
        "db.namespace": "ledgerline",
        "server.address": "127.0.0.1",
        "server.port": 5432,
        "db.operation.name": "SELECT",
        "db.collection.name": "events",
        "db.query.text": "SELECT version, event_type, schema_version, data, hash FROM events "
        "WHERE stream_id = %s AND version >= %s",
    }

    def one() -> None:
        with tracer.start_as_current_span("command.deposit", attributes=command):
            for name in ("snapshot_store.load", "event_store.load", "event_store.append"):
                with tracer.start_as_current_span(name, attributes=store):
                    tracer.start_span(
                        "SELECT events", kind=trace.SpanKind.CLIENT, attributes=client
                    ).end()

    for _ in range(500):
        one()
    started = time.perf_counter()
    for _ in range(SDK_TRACES):
        one()
    elapsed = time.perf_counter() - started
    provider.shutdown()
    return elapsed / SDK_TRACES


def worker(mode: str, deposits: int, accounts: int) -> None:
    """Runs in a child process: set up tracing per mode, time the deposits, print JSON."""
    sys.path.insert(0, str(ROOT))
    from common import setup_django

    url = os.environ["BENCH_URL"]
    os.environ.update({"DATABASE_URL": url, **PRODUCTION_ENV})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config import telemetry

    if mode == "noop-exporter":
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        class Drop(SpanExporter):
            def export(self, spans):  # type: ignore[no-untyped-def]
                return SpanExportResult.SUCCESS

        # Everything on (our spans, Django and psycopg instrumentation), nothing exported.
        assert telemetry.setup(span_exporter=Drop(), batch=True)
    elif mode in SAMPLING:
        assert telemetry.setup()
    setup_django(url)
    from bank.services import Actor
    from bank.services import accounts as svc

    actor = Actor.system("bench")
    ids = [svc.open_account(holder_name=f"T{i}", actor=actor).id for i in range(accounts)]
    for i in range(200):  # warm-up
        svc.deposit(account_id=ids[i % accounts], amount_cents=1, actor=actor)
    if mode in SPLIT:
        print(json.dumps({"mode": mode, **split(svc, ids, actor, deposits)}))
        telemetry.shutdown()
        return
    started = time.perf_counter()
    for i in range(deposits):
        svc.deposit(account_id=ids[i % accounts], amount_cents=1, actor=actor)
    elapsed = time.perf_counter() - started
    if mode in SAMPLING:
        from config import telemetry

        telemetry.shutdown()
    print(json.dumps({"mode": mode, "rate": deposits / elapsed}))


def split(svc: Any, ids: list[Any], actor: Any, deposits: int) -> dict[str, list[float]]:
    """Each deposit's time in microseconds, by whether its trace was sampled."""
    from opentelemetry import trace

    tracer = trace.get_tracer("bench")
    times: dict[str, list[float]] = {"sampled": [], "unsampled": []}
    for i in range(deposits):
        with tracer.start_as_current_span("bench.deposit") as root:
            sampled = root.is_recording()  # while it is open: an ended span records nothing
            started = time.perf_counter()
            svc.deposit(account_id=ids[i % len(ids)], amount_cents=1, actor=actor)
            took = (time.perf_counter() - started) * 1e6
        times["sampled" if sampled else "unsampled"].append(took)
    return times


class Sink(BaseHTTPRequestHandler):
    """A receiver that keeps connections open (HTTP/1.1), as a collector does."""

    protocol_version = "HTTP/1.1"
    received = 0

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        Sink.received += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deposits", type=int, default=3000)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", choices=(*MODES, *SPLIT, "sdk-alone"))
    parser.add_argument("--endpoint")
    args = parser.parse_args()
    if args.worker == "sdk-alone":
        print(json.dumps({"seconds": sdk_alone(args.endpoint)}))
        return
    if args.worker:
        worker(args.worker, args.deposits, args.accounts)
        return
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    alone: list[float] = []
    split_times: dict[tuple[str, str], list[float]] = {
        (mode, kind): [] for mode in SPLIT for kind in ("sampled", "unsampled")
    }
    for _ in range(args.rounds):  # interleaved, so drift in the machine hits every mode
        out = subprocess.run(
            [sys.executable, __file__, "--worker", "sdk-alone", "--endpoint", endpoint],
            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        alone.append(json.loads(out.strip().splitlines()[-1])["seconds"])
        for mode in (*MODES, *SPLIT):
            url = recreate_database(BENCH_DB)
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("OTEL_") or k == "OTEL_PYTHON_DB_SPANS"
            }
            env["BENCH_URL"] = url
            if mode in SAMPLING:
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
                env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
                env.update(SAMPLING[mode])
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    mode,
                    "--deposits",
                    str(args.deposits),
                    "--accounts",
                    str(args.accounts),
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            if mode in SPLIT:
                for kind in ("sampled", "unsampled"):
                    split_times[(mode, kind)] += result[kind]
            else:
                rates[mode].append(result["rate"])
    sink.shutdown()
    best = {mode: max(values) for mode, values in rates.items()}
    print(
        f"\nDeposits through the services on PostgreSQL, {args.deposits} per run, best of "
        f"{args.rounds} interleaved runs per mode"
    )
    print(f"{'tracing':<16} {'deposits/s':>11} {'vs off':>7}")
    for mode in MODES:
        print(f"{mode:<16} {best[mode]:>11,.0f} {best[mode] / best['off']:>6.2f}x")
    cost = 1 - best["otlp-loopback"] / best["off"]
    sampled = 1 - best["otlp-10pct"] / best["off"]
    floor = 1 - best["otlp-0pct"] / best["off"]
    trace_s = min(alone)
    sdk_share = trace_s * best["off"]  # a sampled trace's SDK time over an untraced deposit's
    print(
        f"tracing with OTLP export costs {cost:.1%} of throughput at 100% sampling (no "
        f"target), {sampled:.1%} at 10% (target: at most 5%), {floor:.1%} with nothing "
        f"sampled; the receiver got {Sink.received} export requests"
    )
    print(
        f"baseline, the stock SDK alone: a trace of the deposit's shape (7 spans) made and "
        f"exported over OTLP/HTTP takes {trace_s * 1e6:.0f} us, {sdk_share:.0%} of an "
        f"untraced deposit: 10% sampling cannot cost less than {sdk_share / 10:.1%} here "
        "before any of the product's code"
    )

    def described(mode: str, kind: str) -> str:
        times = split_times[(mode, kind)]
        return (
            f"{statistics.median(times):,.0f} us median, {statistics.fmean(times):,.0f} mean "
            f"(n={len(times)})"
        )

    print(
        "each deposit under a root span, timed alone (all rounds): at 10%, a sampled one "
        f"{described('split-10pct', 'sampled')}, an unsampled one "
        f"{described('split-10pct', 'unsampled')}; with nothing sampled "
        f"{described('split-0pct', 'unsampled')}"
    )


if __name__ == "__main__":
    main()
