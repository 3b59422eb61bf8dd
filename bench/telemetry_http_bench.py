"""The cost of tracing on deposits over HTTP through gunicorn (issue 15's benchmark).

gunicorn serves the API on PostgreSQL with production settings in four modes, one after
the other in each round, rounds interleaved: tracing off (no OTEL_* variables), 100 %
sampling with the OTLP/HTTP exporter sending to a receiver on loopback, 10 %
(``parentbased_traceidratio`` 0.1: the decision is taken at the Django server span), and
0 % (the same with ratio 0: the SDK, the instrumentation and the metrics, nothing sampled,
which is the floor of any sampling rate).
4 concurrent clients POST deposits over 50 accounts. Prints deposits/s and p50/p99 per
mode and the ratio to tracing off (issue 15's target: 10 % sampling costs at most 5 %), and
the gunicorn workers' CPU time per request (median over the rounds, from /proc), which
moves less from run to run than throughput does.

Run: ``.venv/bin/python bench/telemetry_http_bench.py [--requests N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
from http.server import ThreadingHTTPServer
from pathlib import Path
from threading import Thread

from api_bench import free_port, request, start_server, teller_and_accounts
from common import (
    BENCH_DB,
    Result,
    recreate_database,
    run_commands,
    setup_django,
)
from telemetry_bench import Sink

ACCOUNTS = 50


def workers_cpu(master: int) -> float:
    """CPU seconds used so far by a gunicorn master's workers (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for task in Path(f"/proc/{master}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


CLIENTS = 4
MODES = ("off", "100%", "10%", "0%")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    url = recreate_database(BENCH_DB)
    setup_django(url)
    from django.db import connections

    from bank.services import accounts as svc

    token, ids = teller_and_accounts(ACCOUNTS)
    connections.close_all()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    otel = {
        "off": {},
        "100%": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        "10%": {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        },
        # The floor of any sampling rate: the SDK, the instrumentation and the metrics,
        # with no trace sampled.
        "0%": {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0",
        },
    }
    results: dict[str, list[Result]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    statuses: dict[int, int] = {}
    sent = 0
    for _ in range(args.rounds):
        for mode in MODES:
            port = free_port()
            server = start_server(url, port, args.workers, otel[mode])
            try:

                def deposit(i: int, port: int = port) -> None:
                    path = f"/api/accounts/{ids[i % ACCOUNTS]}/deposit/"
                    status = request(port, "POST", path, token, {"amount_cents": 1})
                    statuses[status] = statuses.get(status, 0) + 1

                run_commands("warm-up", CLIENTS, [lambda i=i: deposit(i) for i in range(100)])
                work = [lambda i=i: deposit(i) for i in range(args.requests)]
                before = workers_cpu(server.pid)
                results[mode].append(run_commands(mode, CLIENTS, work))
                cpu[mode].append((workers_cpu(server.pid) - before) / args.requests)
                sent += 100 + args.requests
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(30)
    sink.shutdown()
    assert statuses == {200: sent}, statuses
    total = sum(svc.get_account(i).balance_cents for i in ids)
    assert total == sent, f"{total} cents deposited, {sent} answered 200"
    medians = {m: sorted(r, key=lambda x: x.rate)[len(r) // 2] for m, r in results.items()}
    load = os.getloadavg()
    print(
        f"\nPOST deposit through gunicorn ({args.workers} workers), PostgreSQL, {CLIENTS} "
        f"clients, {args.requests} per run, median of {args.rounds} interleaved rounds; "
        f"load average {load[0]:.2f}"
    )
    header = (
        f"{'tracing':<8} {'deposits/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'vs off':>7} "
        f"{'workers CPU us/request':>22} {'vs off':>7}"
    )
    print(header)
    print("-" * len(header))
    off = medians["off"].rate
    cpu_us = {mode: statistics.median(values) * 1e6 for mode, values in cpu.items()}
    for mode in MODES:
        r = medians[mode]
        print(
            f"{mode:<8} {r.rate:>11,.0f} {r.pct(50):>7.2f} {r.pct(99):>7.2f} {r.rate / off:>6.2f}x "
            f"{cpu_us[mode]:>22,.0f} {cpu_us[mode] / cpu_us['off'] - 1:>+7.1%}"
        )
    print(
        f"tracing costs {1 - medians['100%'].rate / off:.1%} at 100% sampling (no target), "
        f"{1 - medians['10%'].rate / off:.1%} at 10% (target: at most 5%), "
        f"{1 - medians['0%'].rate / off:.1%} with nothing sampled; the receiver got "
        f"{Sink.received} export requests; every deposit answered 200 and is in the balances"
    )


if __name__ == "__main__":
    main()
