"""The cost of tracing on the deposit command path on PostgreSQL (issues 7 and 15).

Modes, each in its own process (OpenTelemetry allows one provider per process), on the same
database, in one run: tracing off (no SDK: the API's no-op tracer); the stock SDK (our
spans, the store's database spans, the Django and psycopg instrumentation) with a no-op
exporter behind a batch processor; the OTLP/HTTP exporter sending to a receiver on
loopback at 100 % sampling; the same at 10 % (``OTEL_TRACES_SAMPLER=
parentbased_traceidratio``, ``OTEL_TRACES_SAMPLER_ARG=0.1``); at 10 % without database
spans (``OTEL_PYTHON_DB_SPANS=false``); and at 0 % (everything installed, nothing sampled:
the floor of any rate). Each mode runs deposits through the services; throughput is
compared with tracing off (issue 15's target: 10 % sampling costs at most 5 %).

The modes run side by side: one long-lived process each, on one database, taking turns
with slices of deposits (``--deposits`` each, ``--rounds`` turns), the order turning every
round; each slice ends when the batch processor has exported its spans, so the export's
cost falls in the slice that made them. A mode's figure is the median of its rounds'
ratios to tracing off, so that the machine's drift (large on a small shared machine) falls
on both sides of each ratio. Beside throughput, the CPU time of each mode's process per
deposit (all its threads: the exporter's too), which moves much less from run to run.

A baseline without the product, in the same run: the stock SDK alone making traces of the
same shape (a root, three store spans, a client span under each, with the same
attributes) behind a batch processor, then encoding and sending them over OTLP/HTTP to
the same receiver in batches of 512, each part timed. Over the time of an untraced
deposit, a tenth of their sum is the floor of 10 % sampling's cost on this machine.

And a diagnostic (``--split``), at 10 % and at 0 %: each deposit under a root span of the
bench's own, timed one by one and split by whether its trace was sampled, which shows
where the 10 % figure's cost is paid: in the sampled deposits themselves, or in every
deposit (an exporter encoding on a thread of the same process holds the interpreter's
lock meanwhile).

Run: ``make bench`` or ``.venv/bin/python bench/telemetry_bench.py [--deposits N] [--rounds N]
[--split]`` (the defaults: 12 rounds of 2,000 deposits).
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
    "otlp-loopback": {"OTEL_TRACES_SAMPLER_ARG": "1"},
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


def sdk_alone(endpoint: str) -> dict[str, float]:
    """Seconds per trace of the deposit's shape for the stock SDK alone: making its spans
    (in line, behind a batch processor) and encoding and sending them over OTLP/HTTP in
    batches of 512 (the batch processor's default), timed apart."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    kept: list[ReadableSpan] = []

    class Keep(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            kept.extend(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    # A queue that holds every span of the run: none is dropped, none is encoded meanwhile.
    processor = BatchSpanProcessor(Keep(), max_queue_size=10 * 7 * SDK_TRACES)
    provider.add_span_processor(processor)
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
    provider.force_flush()
    kept.clear()
    started = time.perf_counter()
    for _ in range(SDK_TRACES):
        one()
    make = (time.perf_counter() - started) / SDK_TRACES
    provider.force_flush()
    assert len(kept) == 7 * SDK_TRACES, len(kept)
    exporter = OTLPSpanExporter(f"{endpoint}/v1/traces")
    started = time.perf_counter()
    for at in range(0, len(kept), 512):
        assert exporter.export(kept[at : at + 512]) is SpanExportResult.SUCCESS
    export = (time.perf_counter() - started) / SDK_TRACES
    provider.shutdown()
    exporter.shutdown()
    return {"make": make, "export": export}


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
    from opentelemetry import trace

    provider = trace.get_tracer_provider()

    def flush() -> None:
        if hasattr(provider, "force_flush"):  # the SDK's (not the API's no-op one)
            provider.force_flush()

    flush()
    print("ready", flush=True)
    at = 0
    for line in sys.stdin:  # slices: "N" runs N deposits and answers the seconds taken
        if line.strip() == "quit":
            break
        count = int(line)
        cpu, main_cpu = time.process_time(), time.thread_time()
        started = time.perf_counter()
        for i in range(at, at + count):
            svc.deposit(account_id=ids[i % accounts], amount_cents=1, actor=actor)
        # What the slice's spans cost is counted in it: the batch processor exports what it
        # still holds before the slice ends.
        flush()
        took = time.perf_counter() - started
        cpu, main_cpu = time.process_time() - cpu, time.thread_time() - main_cpu
        print(json.dumps({"seconds": took, "cpu": cpu, "main": main_cpu}), flush=True)
        at += count
    telemetry.shutdown()


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
    parser.add_argument("--deposits", type=int, default=2000, help="per slice")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--processes", type=int, default=3, help="blocks of rounds")
    parser.add_argument("--worker", choices=(*MODES, *SPLIT, "sdk-alone"))
    parser.add_argument("--endpoint")
    parser.add_argument("--split", action="store_true", help="add the diagnostic")
    parser.add_argument(
        "--modes", help="comma-separated: only these modes (besides off) and no baseline"
    )
    args = parser.parse_args()
    if args.worker == "sdk-alone":
        print(json.dumps(sdk_alone(args.endpoint)))
        return
    if args.worker:
        worker(args.worker, args.deposits, args.accounts)
        return
    modes = MODES
    if args.modes:
        modes = ("off", *(m for m in args.modes.split(",") if m != "off"))
        unknown = set(modes) - set(MODES)
        if unknown:
            parser.error(f"unknown modes {sorted(unknown)}: choose among {', '.join(MODES)}")
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    alone: dict[str, list[float]] = {"make": [], "export": []}
    for _ in range(0 if args.modes else 3):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", "sdk-alone", "--endpoint", endpoint],
            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for part, seconds in json.loads(out.strip().splitlines()[-1]).items():
            alone[part].append(seconds)
    url = recreate_database(BENCH_DB)

    def environment(mode: str) -> dict[str, str]:
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
        return env

    # One long-lived process per mode, on one database (each with its own accounts), started
    # one after the other (the first migrates). Then slices of deposits, one mode at a time,
    # the modes' order turning each round, so that whatever the machine does meanwhile
    # falls on every mode alike; each mode's ratio to tracing off is taken within a round.
    # The processes are started anew for each of --processes blocks of rounds: one process
    # can be a few per cent faster or slower than another of the same code for its whole
    # life (its memory layout), which more rounds alone would not average out.
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    main_cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    blocks = max(1, min(args.processes, args.rounds))
    for block in range(blocks):
        workers: dict[str, subprocess.Popen[str]] = {}
        for mode in modes:
            workers[mode] = subprocess.Popen(
                [sys.executable, __file__, "--worker", mode, "--accounts", str(args.accounts)],
                env=environment(mode),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            line = workers[mode].stdout.readline()  # type: ignore[union-attr]
            if line.strip() != "ready":
                raise SystemExit(f"the {mode} worker did not start (it said {line!r}); see above")
        rounds = range(block * args.rounds // blocks, (block + 1) * args.rounds // blocks)
        for round_ in rounds:
            order = modes[round_ % len(modes) :] + modes[: round_ % len(modes)]
            for mode in order:
                process = workers[mode]
                print(args.deposits, file=process.stdin, flush=True)
                slice_ = json.loads(process.stdout.readline())  # type: ignore[union-attr]
                rates[mode].append(args.deposits / slice_["seconds"])
                cpu[mode].append(slice_["cpu"] / args.deposits)
                main_cpu[mode].append(slice_["main"] / args.deposits)
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for process in workers.values():
            print("quit", file=process.stdin, flush=True)
            process.wait(120)
    split_times: dict[tuple[str, str], list[float]] = {
        (mode, kind): [] for mode in SPLIT for kind in ("sampled", "unsampled")
    }
    for mode in SPLIT if args.split else ():
        for _ in range(3):
            url = recreate_database(BENCH_DB)
            out = subprocess.run(
                [sys.executable, __file__, "--worker", mode, "--deposits", str(args.deposits)],
                env=environment(mode),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            for kind in ("sampled", "unsampled"):
                split_times[(mode, kind)] += result[kind]
    sink.shutdown()
    rate = {mode: statistics.median(values) for mode, values in rates.items()}
    ratios = {
        mode: sorted(r / o for r, o in zip(rates[mode], rates["off"], strict=True))
        for mode in modes
    }
    ratio = {mode: statistics.median(values) for mode, values in ratios.items()}
    print(
        f"\nDeposits through the services on PostgreSQL: {args.rounds} rounds of {args.deposits} "
        f"per mode, interleaved, in {blocks} processes per mode one after another; the "
        "median rate, and the median of the rounds' ratios to off (lowest-highest); CPU "
        "time per deposit, median, of the whole process and of its command thread"
    )
    cpu_us = {mode: statistics.median(values) * 1e6 for mode, values in cpu.items()}
    main_us = {mode: statistics.median(values) * 1e6 for mode, values in main_cpu.items()}
    print(
        f"{'tracing':<17} {'deposits/s':>11} {'vs off':>7} {'rounds':>10}  "
        f"{'CPU us/deposit':>14} {'vs off':>7} {'in the command thread':>21}"
    )
    for mode in modes:
        print(
            f"{mode:<17} {rate[mode]:>11,.0f} {ratio[mode]:>6.2f}x {ratios[mode][0]:.2f}-"
            f"{ratios[mode][-1]:.2f}  {cpu_us[mode]:>14,.0f} "
            f"{cpu_us[mode] / cpu_us['off'] - 1:>+7.1%} {main_us[mode]:>21,.0f}"
        )
    if args.modes:
        return

    def cost(mode: str) -> str:
        return f"{1 - ratio[mode]:.1%} (CPU {cpu_us[mode] / cpu_us['off'] - 1:+.1%})"

    print(
        f"tracing with OTLP export costs {cost('otlp-loopback')} of throughput at 100% "
        f"sampling (no target), {cost('otlp-10pct')} at 10% (target: at most 5%), "
        f"{cost('otlp-0pct')} with nothing sampled; the receiver got {Sink.received} export "
        "requests"
    )
    make, export = min(alone["make"]), min(alone["export"])
    untraced = 1 / rate["off"]
    print(
        f"baseline, the stock SDK alone, a trace of the deposit's shape (7 spans): making it "
        f"takes {make * 1e6:.0f} us in line, encoding and sending it over OTLP/HTTP "
        f"{export * 1e6:.0f} us more, against {untraced * 1e6:.0f} us for an untraced "
        f"deposit: at 10% sampling that is {(make + export) / untraced / 10:.1%} of a deposit "
        f"({make / untraced / 10:.1%} making, {export / untraced / 10:.1%} exporting) before "
        "any of the product's code"
    )
    if not args.split:
        return

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
