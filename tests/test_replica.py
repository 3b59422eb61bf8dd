"""Read-model reads from a PostgreSQL streaming replica (DATABASE_REPLICA_URL).

The tests run a primary and a streaming replica of their own (initdb, then
``pg_basebackup -R`` into another directory, each on a free loopback port, as the postgres
user), migrate the primary, and start gunicorn and the projection follower with both URLs,
so the settings, the router and the middleware are the deployed ones. The replica's
answers are told from the primary's by pausing its replay (``pg_wal_replay_pause()``): a
row the primary's read model has and the paused replica has not shows where a read came
from.
"""

from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.support import ROOT, manage_env, require, run_manage, start_manage

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
ADMIN_PASSWORD = "replica-test-password-0123"


# --- settings and routing, without servers (both databases) ----------------------------------


def _settings(**env: str) -> subprocess.CompletedProcess:
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_REPLICA_URL")
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, config.settings as s; print(json.dumps([sorted(s.DATABASES), "
            "getattr(s, 'DATABASE_ROUTERS', []), "
            "[m for m in s.MIDDLEWARE if 'db_routers' in m], "
            "s.DATABASES.get('replica', {}).get('TEST')]))",
        ],
        env={**inherited, "PYTHONPATH": str(ROOT), "DEBUG": "true", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_without_a_replica_url_there_is_no_replica_alias_router_or_middleware():
    result = _settings(DATABASE_URL="postgres://postgres@127.0.0.1:5432/ledgerline")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [["default"], [], [], None]


def test_a_replica_url_installs_the_router_and_the_replica_mirrors_the_primary_in_tests():
    result = _settings(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/ledgerline",
        DATABASE_REPLICA_URL="postgres://postgres@127.0.0.1:5433/ledgerline",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        ["default", "replica"],
        ["config.db_routers.ReplicaRouter"],
        ["config.db_routers.ReadScopeMiddleware"],
        {"MIRROR": "default"},
    ]


def test_a_replica_url_beside_sqlite_is_refused_naming_the_fix():
    result = _settings(DATABASE_REPLICA_URL="postgres://postgres@127.0.0.1:5433/ledgerline")
    assert result.returncode != 0
    assert "DATABASE_REPLICA_URL needs PostgreSQL" in result.stderr
    assert "unset it to read from the primary only" in result.stderr


def test_the_replica_router_keeps_writes_migrations_and_unscoped_reads_on_the_primary():
    from bank.models import AccessLogEntry
    from config import db_routers
    from projections.models import AccountBalance, Checkpoint, DeadLetter, TransactionHistory

    router = db_routers.ReplicaRouter()
    read_models = (AccountBalance, TransactionHistory, AccessLogEntry)
    for model in (*read_models, Checkpoint, DeadLetter):
        assert router.db_for_write(model) == "default"
        assert router.db_for_read(model) == "default"  # outside a request: the followers
    assert router.allow_migrate("default", "projections")
    assert not router.allow_migrate("replica", "projections")
    with db_routers.read_scope(replica_allowed=True):  # no replica configured
        assert db_routers.read_alias() == "default"
    with db_routers.read_scope(replica_allowed=False):  # a command's request
        assert {router.db_for_read(model) for model in read_models} == {"default"}
    with db_routers.read_scope(replica_allowed=True) as choice:
        choice.alias = "replica"  # decided (what the first read-model read does)
        assert {router.db_for_read(model) for model in read_models} == {"replica"}
        for model in (Checkpoint, DeadLetter):
            assert router.db_for_read(model) == "default"  # read-your-writes bookkeeping
        db_routers.use_primary(db_routers.BEHIND)
        assert {router.db_for_read(model) for model in read_models} == {"default"}
    assert db_routers.read_alias() == "default"  # the scope ended with the request


# --- a primary and its streaming replica (PostgreSQL) ----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*args: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


def _wait_until(condition, what: str, seconds: float = 120) -> None:
    """Poll an observed condition; fail naming it after ``seconds`` (generous: 2 cores)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        time.sleep(0.05)


class Server:
    """One PostgreSQL 15 server of the test's own, in a temporary directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.data = directory / "data"
        self.port = _free_port()

    @classmethod
    def primary(cls) -> Server:
        server = cls(Path(tempfile.mkdtemp(prefix="ledgerline-primary-")))
        if os.geteuid() == 0:
            shutil.chown(server.dir, "postgres", "postgres")
        # initdb's pg_hba.conf trusts replication connections from loopback, and wal_level
        # "replica" with ten WAL senders is the default: a replica can stream as it is.
        server._run(PG_BIN / "initdb", "-D", server.data, "-A", "trust", "-U", "postgres")
        return server

    @classmethod
    def replica_of(cls, primary: Server) -> Server:
        server = cls(Path(tempfile.mkdtemp(prefix="ledgerline-replica-")))
        if os.geteuid() == 0:
            shutil.chown(server.dir, "postgres", "postgres")
        # -R writes standby.signal and primary_conninfo: the copy starts as a hot standby
        # that streams from the primary.
        server._run(
            PG_BIN / "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            primary.port,
            "-U",
            "postgres",
            "-D",
            server.data,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )
        return server

    def _run(self, *args: object, check: bool = True) -> None:
        result = subprocess.run(
            _as_postgres(*map(str, args)), capture_output=True, text=True, timeout=300
        )
        assert not check or result.returncode == 0, result.stdout + result.stderr

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}"
        self._run(
            PG_BIN / "pg_ctl",
            "-D",
            self.data,
            "-o",
            options,
            "-l",
            self.dir / "log",
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, query: str, *params: object) -> object:
        """The first column of the first row of ``query`` (autocommit)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            row = conn.execute(query, params).fetchone()
        return row[0] if row else None


@pytest.fixture(scope="module")
def replication():
    """A primary and its streaming replica, both running."""
    require(
        (PG_BIN / "pg_basebackup").exists(),
        f"PostgreSQL's server binaries at {PG_BIN}",
        "the postgresql package; set PG_BIN for another version",
    )
    primary = replica = None
    try:
        primary = Server.primary()
        primary.start()
        replica = Server.replica_of(primary)
        replica.start()
        _wait_until(lambda: replica.sql("SELECT pg_is_in_recovery()") is True, "a hot standby")
        yield primary, replica
    finally:
        for server in (replica, primary):
            if server is not None:
                server.remove()


@pytest.fixture(scope="module")
def site(replication):
    """The app on the primary with DATABASE_REPLICA_URL: gunicorn and the follower."""
    primary, replica = replication
    env = manage_env(
        primary.url,
        DATABASE_REPLICA_URL=replica.url,
        DATABASE_REPLICA_RETRY_SECONDS="1",
        # The counter goes to standard output (the console exporter), twice a second.
        OTEL_METRICS_EXPORTER="console",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        READ_YOUR_WRITES_TIMEOUT_MS="30000",
        API_THROTTLE_RATE="1000000/minute",
        PYTHONUNBUFFERED="1",
    )
    # The router lets migrations run on the primary only (the replica replays them).
    run_manage({**env, "OTEL_METRICS_EXPORTER": "none"}, "migrate", "--no-input")
    setup = run_manage(
        {**env, "OTEL_METRICS_EXPORTER": "none"},
        "shell",
        "-c",
        "from django.contrib.auth.models import Group, User;"
        "from rest_framework.authtoken.models import Token;"
        "u = User.objects.create_user('teller');"
        "u.groups.add(Group.objects.get(name='tellers'));"
        "print('TOKEN', Token.objects.create(user=u).key);"
        f"User.objects.create_superuser('boss', password={ADMIN_PASSWORD!r})",
    ).stdout
    token = next(x for x in setup.splitlines() if x.startswith("TOKEN ")).split()[1]
    port = _free_port()
    logs = Path(tempfile.mkdtemp(prefix="ledgerline-replica-logs-"))
    server_out = open(logs / "gunicorn.out", "wb")  # noqa: SIM115 - closed at the end
    server_err = open(logs / "gunicorn.err", "wb")  # noqa: SIM115
    follower_log = open(logs / "run_projections.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--workers",
            "1",  # one process: its log and its counter are the ones read below
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        env=env,
        stdout=server_out,  # files: an unread pipe would fill up and block the server
        stderr=server_err,
    )
    follower = start_manage(
        {**env, "OTEL_METRICS_EXPORTER": "none"},
        "run_projections",
        "--poll-interval",
        "0.2",
        stdout=follower_log,
        stderr=subprocess.STDOUT,
    )
    try:
        site = Site(port, token, primary, replica, logs)
        _wait_until(site.listening, "gunicorn to listen")
        yield site
    finally:
        for process in (server, follower):
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
        for log in (server_out, server_err, follower_log):
            log.close()
        shutil.rmtree(logs, ignore_errors=True)


class Site:
    def __init__(self, port: int, token: str, primary: Server, replica: Server, logs: Path):
        self.port, self.token, self.primary, self.replica, self.logs = (
            port,
            token,
            primary,
            replica,
            logs,
        )

    def listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def request(self, method: str, path: str, body: object = None, **headers: str):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(
                method,
                path,
                body=None if body is None else json.dumps(body),
                headers={
                    "Authorization": f"Token {self.token}",
                    "Content-Type": "application/json",
                    **headers,
                },
            )
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), json.loads(response.read())
        finally:
            conn.close()

    def open_account(self, name: str) -> tuple[str, int]:
        """A new account's id and the position of its event (X-Event-Position)."""
        status, headers, body = self.request(
            "POST",
            "/api/accounts/",
            {"holder_name": name, "initial_balance_cents": 100},
            **{"Idempotency-Key": str(uuid.uuid4())},
        )
        assert status == 201, body
        return body["id"], int(headers["X-Event-Position"])

    def account_ids(self, query: str = "") -> tuple[set[str], int]:
        """The ids in the account list and its X-Projection-Position."""
        status, headers, body = self.request("GET", f"/api/accounts/?page_size=100{query}")
        assert status == 200, body
        assert body["count"] <= 100
        return {a["id"] for a in body["results"]}, int(headers["X-Projection-Position"])

    def checkpoint(self, server: Server, name: str = "balances") -> int:
        return int(
            server.sql("SELECT position FROM projection_checkpoints WHERE name = %s", name) or 0
        )

    def primary_projected(self, position: int) -> None:
        for name in ("balances", "transactions"):
            _wait_until(
                lambda name=name: self.checkpoint(self.primary, name) >= position,
                f"the primary's {name} projection to reach {position}",
            )

    def replica_caught_up(self) -> None:
        lsn = self.primary.sql("SELECT pg_current_wal_lsn()::text")
        _wait_until(
            lambda: self.replica.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", lsn) is True,
            "the replica to replay the primary's WAL",
        )

    @contextlib.contextmanager
    def replay_paused(self):
        self.replica.sql("SELECT pg_wal_replay_pause()")
        _wait_until(
            lambda: self.replica.sql("SELECT pg_get_wal_replay_pause_state()") == "paused",
            "the replica's replay to pause",
        )
        try:
            yield
        finally:
            self.replica.sql("SELECT pg_wal_replay_resume()")

    def served_by_replica(self) -> bool:
        """Whether the account list comes from the replica now: with its replay paused, an
        account the primary's read model has is missing from the list."""
        with self.replay_paused():
            account, position = self.open_account("Probe")
            self.primary_projected(position)
            ids, _ = self.account_ids()
        return account not in ids

    def admin(self):
        """An opener logged in to the admin as a superuser (session and CSRF cookies)."""
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        base = f"http://127.0.0.1:{self.port}"
        form = opener.open(f"{base}/admin/login/", timeout=60).read().decode()
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        assert csrf, form
        data = urllib.parse.urlencode(
            {
                "username": "boss",
                "password": ADMIN_PASSWORD,
                "csrfmiddlewaretoken": csrf.group(1),
                "next": "/admin/",
            }
        ).encode()
        opener.open(f"{base}/admin/login/?next=/admin/", data, timeout=60).read()

        def page(path: str) -> str:
            with opener.open(f"{base}{path}", timeout=60) as answer:
                assert answer.status == 200 and "/admin/login/" not in answer.url
                return answer.read().decode()

        return page

    def server_log(self) -> str:
        return (self.logs / "gunicorn.err").read_text(errors="replace")

    def fallbacks(self, reason: str) -> int:
        """The server's ``bank.replica.fallbacks`` count for ``reason``, as last exported."""
        text, decoder, at, count = (
            (self.logs / "gunicorn.out").read_text(errors="replace"),
            json.JSONDecoder(),
            0,
            0,
        )
        while (start := text.find("{", at)) >= 0:
            try:
                export, at = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                break  # an export being written
            for resource in export.get("resource_metrics", []):
                for scope in resource["scope_metrics"]:
                    for metric in scope["metrics"]:
                        if metric["name"] == "bank.replica.fallbacks":
                            count = sum(
                                point["value"]
                                for point in metric["data"]["data_points"]
                                if point["attributes"].get("reason") == reason
                            )
        return count


@pytest.mark.postgres
def test_the_account_list_history_and_admin_lists_are_read_from_the_replica(site):
    admin = site.admin()
    name = "Only on the primary so far"
    site.replica_caught_up()
    with site.replay_paused():
        account, position = site.open_account(name)
        site.primary_projected(position)
        replica_position = site.checkpoint(site.replica)
        ids, projection_position = site.account_ids()
        status, _, history = site.request("GET", f"/api/accounts/{account}/transactions/")
        accounts_page = admin(f"/admin/projections/accountbalance/?q={account}")
        # The history read above was logged (on the primary): the log's browser is the replica's.
        log_page = admin(f"/admin/bank/accesslogentry/?q={account}")
    # The primary's read model has the account; the answers do not: they are the replica's.
    assert account not in ids
    assert projection_position == replica_position < position
    assert status == 200 and history["count"] == 0
    assert name not in accounts_page
    assert 'title="user id' not in log_page  # no row
    # Replay resumed, the replica catches up and the same reads show the account.
    _wait_until(lambda: account in site.account_ids()[0], "the replica to show the account")
    status, _, history = site.request("GET", f"/api/accounts/{account}/transactions/")
    assert status == 200 and history["count"] == 1
    assert name in admin(f"/admin/projections/accountbalance/?q={account}")
    assert 'title="user id' in admin(f"/admin/bank/accesslogentry/?q={account}")


@pytest.mark.postgres
def test_a_min_position_beyond_the_paused_replica_is_read_from_the_primary_at_once(site):
    site.replica_caught_up()
    with site.replay_paused():
        replica_position = site.checkpoint(site.replica)
        account, position = site.open_account("Read your writes")
        site.primary_projected(position)
        # Beyond what the replica replayed: the primary answers, with the account.
        started = time.monotonic()
        ids, projection_position = site.account_ids(f"&min_position={position}")
        assert account in ids and projection_position >= position
        # Answered without waiting for the paused replica (it would never get there).
        assert time.monotonic() - started < 20
        status, headers, history = site.request(
            "GET", f"/api/accounts/{account}/transactions/", **{"X-Min-Position": str(position)}
        )
        assert status == 200 and history["count"] == 1
        assert int(headers["X-Projection-Position"]) >= position
        # A position the replica has replayed is still read from the replica.
        ids, projection_position = site.account_ids(f"&min_position={replica_position}")
        assert account not in ids and projection_position == replica_position
    _wait_until(lambda: site.fallbacks("behind") >= 2, "the fallbacks to be counted")


@pytest.mark.postgres
def test_a_stopped_replica_sends_reads_to_the_primary_logged_and_counted(site):
    site.replica.stop()
    try:
        account, position = site.open_account("While the replica is down")
        site.primary_projected(position)
        ids, projection_position = site.account_ids()
        assert account in ids and projection_position >= position  # fresh: the primary's
        status, _, history = site.request("GET", f"/api/accounts/{account}/transactions/")
        assert status == 200 and history["count"] == 1
        _wait_until(
            lambda: (
                f"read replica 127.0.0.1:{site.replica.port} is unreachable" in site.server_log()
            ),
            "the warning",
        )
        assert " WARNING config.db_routers " in site.server_log()
        _wait_until(lambda: site.fallbacks("unreachable") >= 2, "the fallbacks to be counted")
    finally:
        site.replica.start()
    # Back, the replica serves the reads again (tried again after
    # DATABASE_REPLICA_RETRY_SECONDS).
    _wait_until(site.served_by_replica, "the replica to serve the reads again")
