"""REST API over a real HTTP server on PostgreSQL (issue 4's benchmark).

gunicorn (as the README deploys it: ``gunicorn config.wsgi`` with several workers) serves
the API on loopback; 4 concurrent clients send ``POST /api/accounts/{id}/deposit/`` over
50 accounts, then ``GET /api/accounts/{id}/`` in the same run. Prints requests/s, p50/p99
and the ratio. Bounded in count; only 127.0.0.1.

Run: ``make bench`` or ``.venv/bin/python bench/api_bench.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

from common import (
    BENCH_DB,
    PRODUCTION_ENV,
    ROOT,
    print_table,
    recreate_database,
    run_commands,
    setup_django,
)

ACCOUNTS = 50
CLIENTS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    url: str, port: int, workers: int, otel: dict[str, str] | None = None
) -> subprocess.Popen:
    """gunicorn on loopback; with ``otel``, exactly those OTEL_* variables (none inherited)."""
    inherited = (
        os.environ
        if otel is None
        else {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    )
    env = {
        **inherited,
        "DATABASE_URL": url,
        **PRODUCTION_ENV,
        "ALLOWED_HOSTS": "127.0.0.1",
        "CONN_MAX_AGE": "60",
        "API_THROTTLE_RATE": "1000000/minute",
        **(otel or {}),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("gunicorn did not start")


def request(port: int, method: str, path: str, token: str, body: dict | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            method,
            path,
            body=json.dumps(body) if body is not None else None,
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def teller_and_accounts(count: int) -> tuple[str, list]:
    """A teller's API token and ``count`` fresh accounts (Django set up on the bench DB)."""
    from django.contrib.auth.models import Group, User
    from rest_framework.authtoken.models import Token

    from bank.services import Actor
    from bank.services import accounts as svc

    user = User.objects.create_user("bench-teller")
    user.groups.add(Group.objects.get(name="tellers"))
    token = Token.objects.create(user=user).key
    actor = Actor.system("bench")
    return token, [
        svc.open_account(holder_name=f"Bench {i}", actor=actor).id for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    url = recreate_database(BENCH_DB)
    setup_django(url)
    from bank.services import accounts as svc

    token, ids = teller_and_accounts(ACCOUNTS)
    port = free_port()
    server = start_server(url, port, args.workers)
    statuses: dict[str, dict[int, int]] = {"deposit": {}, "get": {}}

    def op(kind: str, method: str, path: str, body: dict | None):
        def run() -> None:
            status = request(port, method, path, token, body)
            statuses[kind][status] = statuses[kind].get(status, 0) + 1

        return run

    try:
        warm = [op("get", "GET", f"/api/accounts/{ids[i % ACCOUNTS]}/", None) for i in range(200)]
        run_commands("warm-up", CLIENTS, warm)
        statuses["get"].clear()
        deposits = [
            op(
                "deposit",
                "POST",
                f"/api/accounts/{ids[i % ACCOUNTS]}/deposit/",
                {"amount_cents": 1},
            )
            for i in range(args.requests)
        ]
        gets = [
            op("get", "GET", f"/api/accounts/{ids[i % ACCOUNTS]}/", None)
            for i in range(args.requests)
        ]
        posted = run_commands(f"POST deposit, {CLIENTS} clients", CLIENTS, deposits)
        fetched = run_commands(f"GET account, {CLIENTS} clients", CLIENTS, gets)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    total = sum(svc.get_account(i).balance_cents for i in ids)
    assert statuses["deposit"] == {200: args.requests}, statuses
    assert total == args.requests, f"{total} cents deposited, {args.requests} answered 200"
    print(
        f"\ngunicorn, {args.workers} sync workers, PostgreSQL, {CLIENTS} concurrent clients, "
        f"{args.requests} requests each kind over {ACCOUNTS} accounts"
    )
    print_table("API", [posted, fetched], None, None)
    print(
        f"POST deposit / GET account throughput: {posted.rate / fetched.rate:.2f}x; "
        f"statuses {statuses}; every deposit is in the balances"
    )


if __name__ == "__main__":
    main()
