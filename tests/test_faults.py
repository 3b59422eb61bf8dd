"""PostgreSQL dies under load and comes back; a command fails half-way through a transfer.

The database test runs a PostgreSQL of its own (initdb and pg_ctl on a temporary data
directory, as the postgres user), so the shared server is left alone: gunicorn and
run_projections run against it while clients deposit, the server is stopped with
``pg_ctl -m immediate`` (a crash: connections cut, transactions in flight lost), and
started again.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import eventstore as es
from bank.services import Actor
from bank.services import accounts as svc
from tests.support import (
    ROOT,
    TEST_PII_KEY,
    TEST_SIGNING_KEY,
    manage_env,
    require,
    run_manage,
    start_manage,
)

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
ACTOR = Actor.system("tests")
# A request may wait this long for the database before it is answered 503
# (DB_CONNECT_TIMEOUT_SECONDS, 5 s by default; the README documents it).
MAX_ANSWER_SECONDS = 8.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*args: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


class PrivatePostgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ledgerline-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
            ),
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}"
        subprocess.run(
            _as_postgres(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.dir / "log"),
                "-w",
                "start",
            ),
            check=True,
            capture_output=True,
        )

    def crash(self) -> None:
        subprocess.run(
            _as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
            ),
            check=True,
            capture_output=True,
        )

    def remove(self) -> None:
        subprocess.run(
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"),
            capture_output=True,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres():
    require(
        (PG_BIN / "pg_ctl").exists(),
        f"PostgreSQL's server binaries at {PG_BIN}",
        "the postgresql package; set PG_BIN for another version",
    )
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


def _manage(env: dict, *args: str) -> str:
    return run_manage(env, *args).stdout


def _post(port, path, token, body, key):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.monotonic()
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={
                "Authorization": f"Token {token}",
                "Content-Type": "application/json",
                "Idempotency-Key": key,
            },
        )
        response = conn.getresponse()
        return (
            response.status,
            response.getheader("Content-Type"),
            response.read(),
            (time.monotonic() - started),
        )
    finally:
        conn.close()


@pytest.mark.postgres
def _wait_until(condition, what: str, seconds: float = 120) -> None:
    """Wait for an observed condition, polling; fail naming it after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        time.sleep(0.05)


def test_postgres_crashing_under_load_gives_503s_loses_nothing_and_recovers(private_postgres):
    port = _free_port()
    env = manage_env(  # production settings, as deployed
        private_postgres.url,
        DEBUG="false",
        SECRET_KEY="fault-test-only-secret-key-0123456789abcdef",
        EVENTSTORE_SIGNING_KEY=TEST_SIGNING_KEY,
        PII_MASTER_KEYS=TEST_PII_KEY,
        SECURE_SSL_REDIRECT="false",
        ALLOWED_HOSTS="127.0.0.1",
        CONN_MAX_AGE="60",
        API_THROTTLE_RATE="1000000/minute",
        PYTHONFAULTHANDLER="1",
    )
    _manage(env, "migrate", "--no-input")
    setup = _manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import Group, User;"
        "from rest_framework.authtoken.models import Token;"
        "from bank.services import Actor, accounts as svc;"
        "u = User.objects.create_user('teller');"
        "u.groups.add(Group.objects.get(name='tellers'));"
        "ids = [svc.open_account(holder_name=f'F{i}', actor=Actor.system('t')).id "
        "for i in range(4)];"
        "print('SETUP', Token.objects.create(user=u).key, *ids)",
    )
    line = next(x for x in setup.splitlines() if x.startswith("SETUP "))
    token, *accounts = line.split()[1:]
    logs = private_postgres.dir
    server_log = open(logs / "gunicorn.log", "wb")  # noqa: SIM115 - closed at the end
    follower_log = open(logs / "run_projections.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            "30",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=server_log,  # a file: an unread pipe would fill up and block the logging
    )
    follower = start_manage(
        env,
        "run_projections",
        "--poll-interval",
        "0.2",
        stdout=follower_log,
        stderr=subprocess.STDOUT,
    )
    answers: list[tuple[float, int, str, bytes, float]] = []  # began, status, type, body, s
    sent: dict[str, tuple[str, int]] = {}  # idempotency key -> (account, amount)
    stop = threading.Event()
    t0 = time.monotonic()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            account, amount, key = (
                accounts[(n + i) % len(accounts)],
                n * 100 + i % 7 + 1,
                (f"c{n}-{i}"),
            )
            sent[key] = (account, amount)
            try:
                began = time.monotonic() - t0
                answers.append(
                    (began,)
                    + _post(
                        port,
                        f"/api/accounts/{account}/deposit/",
                        token,
                        {"amount_cents": amount},
                        key,
                    )
                )
            except OSError as exc:  # the web server itself must stay up
                answers.append((began, 0, str(exc), b"", time.monotonic() - t0 - began))
            time.sleep(0.01)

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for thread in clients:
            thread.start()
        # Synchronised on what the clients observe, never on a time window: a loaded machine
        # may take any time to get there (each wait is bounded, generously).
        _wait_until(
            lambda: sum(a[1] == 200 for a in answers) >= 20, "20 deposits before the crash"
        )
        crash_began = time.monotonic() - t0
        private_postgres.crash()
        _wait_until(
            lambda: sum(a[1] == 503 and a[0] >= crash_began for a in answers) >= 3,
            "three 503 answers while PostgreSQL is down",
        )
        restart_began = time.monotonic() - t0
        down = [a for a in answers if crash_began <= a[0] < restart_began]
        private_postgres.start()
        _wait_until(
            lambda: sum(a[1] == 200 and a[0] >= restart_began for a in answers) >= 3,
            "three deposits answered 200 after the restart",
        )
        stop.set()
        for thread in clients:
            thread.join(60)
        # While the database was down: 503 problem+json, quickly; never a 500.
        slow = [(round(a[0], 2), a[1], round(a[4], 2)) for a in answers if a[4] > 1]
        statuses = {a[1] for a in answers}
        assert statuses <= {200, 503}, (slow, [a[:3] for a in answers if a[1] not in (200, 503)])
        unavailable = [a for a in down if a[1] == 503]
        assert unavailable, "no request was answered while PostgreSQL was down"
        for _began, _status, content_type, body, seconds in unavailable:
            assert content_type == "application/problem+json"
            assert json.loads(body)["code"] == "database_unavailable"
            assert seconds < MAX_ANSWER_SECONDS
        # After the restart the same server answers again (no restart of gunicorn): the wait
        # above saw it, and the last answers are 200s.
        assert answers[-1][1] == 200, answers[-5:]
        # Clients retry what was refused, with the same idempotency keys: each deposit
        # lands exactly once, whatever happened to it during the crash.
        answered = {}
        for key, (account, amount) in sent.items():
            status, _, body, _ = _post(
                port, f"/api/accounts/{account}/deposit/", token, {"amount_cents": amount}, key
            )
            assert status == 200, body
            answered[key] = json.loads(body)
        # Verify, in the private database: balances, hash chains, read models.
        check = _manage(
            env,
            "shell",
            "-c",
            "import json; from bank.services import accounts as svc;"
            f"print(json.dumps({{a: svc.get_account(a).balance_cents for a in {accounts!r}}}))",
        )
        balances = json.loads(check.strip().splitlines()[-1])
        for account in accounts:
            expected = sum(amount for a, amount in sent.values() if a == account)
            assert balances[account] == expected, account
        _manage(env, "verify_events")
        deadline = time.monotonic() + 60
        while True:
            status = subprocess.run(  # exits 1 while lagging: not run_manage
                [sys.executable, "manage.py", "projection_status", "--max-lag-events", "0"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if status.returncode == 0:
                break
            assert time.monotonic() < deadline, status.stdout + status.stderr
            time.sleep(0.5)
        read_models = _manage(
            env,
            "shell",
            "-c",
            "import json; from projections.models import AccountBalance;"
            "print(json.dumps({str(r.account_id): r.balance_cents "
            "for r in AccountBalance.objects.all()}))",
        )
        assert json.loads(read_models.strip().splitlines()[-1]) == balances
        assert follower.poll() is None, "run_projections died instead of waiting"
    finally:
        stop.set()
        for process in (server, follower):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        server_log.close()
        follower_log.close()
    follower_output = (logs / "run_projections.log").read_text()
    assert follower.returncode == 0, follower_output[-2000:]
    assert "database unavailable" in follower_output and "stopped cleanly" in follower_output


@pytest.mark.django_db(transaction=True)
def test_a_transfer_that_fails_half_way_leaves_both_accounts_untouched(monkeypatch):
    source = svc.open_account(holder_name="From", initial_balance_cents=1_000, actor=ACTOR)
    target = svc.open_account(holder_name="To", initial_balance_cents=0, actor=ACTOR)
    real_append = es.append_streams
    calls = []

    def append_then_fail(appends, **kwargs):
        calls.append(len(appends))
        real_append(appends, **kwargs)  # both sides written, not yet committed
        raise es.StoreUnavailableError("the connection died after the INSERT")

    monkeypatch.setattr(es, "append_streams", append_then_fail)
    with pytest.raises(Exception, match="connection died"):
        svc.transfer(from_account=source.id, to_account=target.id, amount_cents=400, actor=ACTOR)
    monkeypatch.undo()
    assert calls == [2]  # the failure came after both sides were appended
    assert svc.get_account(source.id).balance_cents == 1_000
    assert svc.get_account(target.id).balance_cents == 0
    assert es.stream_version(source.id) == 1 and es.stream_version(target.id) == 1
    # And the same transfer goes through afterwards.
    svc.transfer(from_account=source.id, to_account=target.id, amount_cents=400, actor=ACTOR)
    assert svc.get_account(target.id).balance_cents == 400
