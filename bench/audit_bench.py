"""The admin's audit page as an auditor opens it, by account length, in ONE run (issue 14).

gunicorn serves the back-office on PostgreSQL with production settings; a logged-in auditor
opens ``/admin/.../<id>/audit/`` of a 100,000-event account and of a 100-event account,
interleaved request by request. Both accounts were verified by ``verify_events --full``,
then got 10 more deposits, so every view verifies (chain and Ed25519 seals) the events
after the recorded verification, as it would in production between runs. Prints p50/p95
per account and the ratio long / short (issue 14's target: p95 <= 300 ms at 100,000
events, costing the same as at 100). The CSV export of each is timed too (it writes every
event, so it grows with the history by nature).

Run: ``.venv/bin/python bench/audit_bench.py [--events N] [--requests N]``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlencode

from api_bench import free_port, start_server
from common import BENCH_DB, median, recreate_database, setup_django

BATCH = 1000


def build_account(events: int) -> uuid.UUID:
    """An account with ``events`` events: opened and ending with 100 deposits through the
    services (so its snapshots are the product's own), the bulk appended in large batches."""
    import eventstore as es
    from bank.services import Actor
    from bank.services import accounts as svc

    actor = Actor.system("bench")
    account = svc.open_account(holder_name="Long History", initial_balance_cents=0, actor=actor)
    bulk = max(0, events - 1 - 100)
    version = 1
    while bulk:
        n = min(BATCH, bulk)
        now = datetime.now(UTC)
        es.append(
            account.id,
            [
                es.NewEvent(
                    event_type="MoneyDeposited",
                    data={"amount_cents": 1, "description": "bulk"},
                    occurred_at=now,
                    metadata={"actor": {"type": "system", "name": "bench"}},
                )
                for _ in range(n)
            ],
            stream_type="bank.account",
            expected_version=version,
        )
        version += n
        bulk -= n
    for _ in range(events - version):
        svc.deposit(account_id=account.id, amount_cents=1, actor=actor)
    return account.id


class Session:
    """An admin session over HTTP (logs in through the login form, CSRF and all)."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        page = self.get("/admin/login/")[1]
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        status, _ = self.request(
            "POST",
            "/admin/login/?next=/admin/",
            urlencode(
                {
                    "csrfmiddlewaretoken": token.decode(),
                    "username": username,
                    "password": password,
                    "next": "/admin/",
                }
            ),
            {"Content-Type": "application/x-www-form-urlencoded", "Referer": "http://127.0.0.1/"},
        )
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"logging in failed ({status})")

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            conn.request(method, path, body=body, headers={"Cookie": cookie, **(headers or {})})
            response = conn.getresponse()
            content = response.read()
            for header, value in response.getheaders():
                if header.lower() == "set-cookie":
                    name, _, rest = value.partition("=")
                    self.cookies[name] = rest.split(";", 1)[0]
            return response.status, content
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    url = recreate_database(BENCH_DB)
    setup_django(url)
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connections
    from django.urls import reverse

    from bank.services import Actor
    from bank.services import accounts as svc

    started = time.perf_counter()
    long_id = build_account(args.events)
    short_id = build_account(100)
    print(f"built {args.events:,} + 100 events in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    call_command("verify_events", "--full", verbosity=0)
    print(f"verify_events --full: {time.perf_counter() - started:.1f} s")
    for account_id in (long_id, short_id):
        for _ in range(10):
            svc.deposit(account_id=account_id, amount_cents=1, actor=Actor.system("bench"))
    auditor = User.objects.create_user("bench-auditor", password="bench-pass", is_staff=True)
    auditor.groups.add(Group.objects.get(name="auditors"))
    paths = {
        f"{args.events:,} events": reverse("admin:bank_account_audit", args=[long_id]),
        "100 events": reverse("admin:bank_account_audit", args=[short_id]),
    }
    exports = {
        f"{args.events:,} events": reverse("admin:bank_account_export", args=[long_id]),
        "100 events": reverse("admin:bank_account_export", args=[short_id]),
    }
    connections.close_all()

    port = free_port()
    server = start_server(url, port, args.workers)
    try:
        session = Session(port, "bench-auditor", "bench-pass")
        for path in paths.values():  # warm each worker's connection and caches
            for _ in range(args.workers * 2):
                status, _ = session.get(path)
                assert status == 200, status
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.requests):
            for name, path in paths.items():
                t0 = time.perf_counter()
                status, body = session.get(path)
                times[name].append(time.perf_counter() - t0)
                assert status == 200 and b"integrity" in body.lower(), status
        export_s: dict[str, float] = {}
        for name, path in exports.items():
            runs = []
            for _ in range(3):
                t0 = time.perf_counter()
                status, body = session.get(path)
                runs.append(time.perf_counter() - t0)
                assert status == 200, status
            export_s[name] = median(runs)
    finally:
        server.terminate()
        server.wait(timeout=30)

    load = os.getloadavg()
    print(
        f"\nAudit page through gunicorn ({args.workers} workers), PostgreSQL, {args.requests} "
        f"requests per account, interleaved; load average {load[0]:.2f}"
    )
    header = f"{'account':<18} {'p50 ms':>8} {'p95 ms':>8} {'CSV export s':>13}"
    print(header)
    print("-" * len(header))
    for name in paths:
        print(
            f"{name:<18} {pct(times[name], 50) * 1000:>8.1f} {pct(times[name], 95) * 1000:>8.1f} "
            f"{export_s[name]:>13.2f}"
        )
    long_name, short_name = paths
    ratio = pct(times[long_name], 95) / pct(times[short_name], 95)
    print(
        f"p95 {long_name} / {short_name}: {ratio:.2f}x (target: p95 <= 300 ms at 100,000 "
        f"events; measured {pct(times[long_name], 95) * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
