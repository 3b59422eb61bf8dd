"""Helpers shared by the tests (not part of the product)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections

ROOT = Path(__file__).resolve().parent.parent

IMMUTABLE_TABLES = ("events", "snapshots", "signing_epoch", "bank_access_log")
# A signing key for tests that run with production settings (DEBUG off); never used elsewhere.
TEST_SIGNING_KEY = "test-prod:96/aJlVi7ZBz7EuE65TdMVu9UFESaaEuj9WaWPEs9CE="
# The tests' personal-data master key (production-like settings require one).
TEST_PII_KEY = "test-pii:" + "dGVzdHMtb25seS1tYXN0ZXIta2V5LTMyLWJ5dGVzISE="


@contextlib.contextmanager
def triggers_disabled(conn: Any = None) -> Iterator[None]:
    """Switch the immutability triggers off, as the database owner could, then back on.

    On PostgreSQL the triggers are disabled by name and re-enabled ``ALWAYS``; on SQLite
    they are dropped and recreated from the SQL that ``sqlite_master`` keeps.
    """
    conn = conn or connection
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            cursor.execute(
                "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE c.relname = ANY(%s) AND NOT t.tgisinternal",
                [list(IMMUTABLE_TABLES)],
            )
            triggers = cursor.fetchall()
            for table, name in triggers:
                cursor.execute(f'ALTER TABLE {table} DISABLE TRIGGER "{name}"')
            try:
                yield
            finally:
                with conn.cursor() as again:
                    for table, name in triggers:
                        again.execute(f'ALTER TABLE {table} ENABLE ALWAYS TRIGGER "{name}"')
        else:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
                f"({', '.join('?' * len(IMMUTABLE_TABLES))})".replace("?", "%s"),
                list(IMMUTABLE_TABLES),
            )
            triggers = cursor.fetchall()
            for name, _ in triggers:
                cursor.execute(f'DROP TRIGGER "{name}"')
            try:
                yield
            finally:
                with conn.cursor() as again:
                    for _, sql in triggers:
                        again.execute(sql)


def now() -> datetime:
    return datetime.now(UTC)


def new_event(event_type: str = "Happened", **data: Any) -> Any:
    from eventstore import NewEvent

    return NewEvent(event_type=event_type, data=data or {"n": 1}, occurred_at=now())


def run_threads(
    count: int, target: Callable[[int, threading.Barrier], Any], *, timeout: float = 120
) -> list[Any]:
    """Run ``target(i, barrier)`` in ``count`` threads, each with its own connection.

    Returns each thread's result or the exception it raised.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def runner(index: int) -> None:
        try:
            results[index] = target(index, barrier)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a worker thread did not finish"
    return results


def stream() -> uuid.UUID:
    return uuid.uuid4()


def ensure_roles() -> None:
    """Recreate the staff groups if a transactional test's flush removed them."""
    import importlib

    from django.apps import apps

    roles = importlib.import_module("bank.migrations.0002_staff_roles")
    roles.create_roles(apps, None)


def database_url(name: str | None = None, *, user: str | None = None) -> str:
    """The PostgreSQL URL of the test database (or of ``name`` on the same server), for
    processes the tests start."""
    s = connection.settings_dict
    host, port = s["HOST"] or "127.0.0.1", s["PORT"] or 5432
    return f"postgres://{user or s['USER']}@{host}:{port}/{name or s['NAME']}"


def require(available: bool, what: str, how: str) -> None:
    """Skip a test whose outside part (a server, a browser, binaries) is missing, except in
    CI (``CI=true``), where the test fails instead: CI must run everything.

    Args:
        available: whether the part is there.
        what: the part, as the message names it.
        how: where it should come from (what installs or starts it).
    """
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI ({how})")
    pytest.skip(f"{what} is not available ({how})")


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@contextlib.contextmanager
def chromium(*, console: bool = False) -> Iterator[Any]:
    """Debian's headless Chromium driven by Selenium, in a throw-away profile.

    Missing Chromium or its driver skips the test outside CI and fails it in CI
    (``require``).

    Args:
        console: keep the browser console's messages (``driver.get_log("browser")``).
    """
    require(
        Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
        f"Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER})",
        ".ci/run installs them with apt-get",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    if console:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def manage_env(database: str, **extra: str) -> dict[str, str]:
    """The environment of a ``manage.py`` process the tests start, on ``database`` (a URL).

    Inherited ``OTEL_*`` variables are left out, so that no test process exports anywhere
    unless the test asks for it in ``extra``.
    """
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {
        **inherited,
        "DATABASE_URL": database,
        "DEBUG": "true",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def run_manage(env: dict[str, str], *args: str, timeout: float = 300) -> Any:
    """Run ``manage.py`` to the end; fail the test, with its output, unless it exits 0."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
    return result


def start_manage(env: dict[str, str], *args: str, **popen: Any) -> subprocess.Popen:
    """Start a long-running ``manage.py`` command (output piped unless ``popen`` says)."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, text=True, **popen
    )


class Clock:
    """A clock the test moves by hand: every call returns the same time until it is moved."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def approval_rule(
    settings: Any,
    *,
    always: str = "freeze,close",
    threshold_cents: int | None = 1_000,
    thresholds: str = "",
    ttl_hours: int = 24,
) -> Any:
    """Turn the maker-checker rule on for a test (tests/conftest.py turns it off)."""
    settings.APPROVAL_ALWAYS = always
    settings.APPROVAL_THRESHOLD_CENTS = threshold_cents
    settings.APPROVAL_THRESHOLDS = thresholds
    settings.APPROVAL_TTL_HOURS = ttl_hours
    return settings


PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def dump_database(path: Path) -> Path:
    """``pg_dump`` the test database to ``path`` (custom format), as an operator would."""
    subprocess.run(
        [str(PG_BIN / "pg_dump"), "--format=custom", f"--file={path}", database_url()],
        check=True,
        capture_output=True,
    )
    return path


@contextlib.contextmanager
def restored(dump: Path) -> Iterator[str]:
    """``pg_restore`` a dump into a fresh database on the same server; yield its name, and
    drop it afterwards."""
    import psycopg

    name = f"restore_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        subprocess.run(
            [
                str(PG_BIN / "pg_restore"),
                "--exit-on-error",
                "--no-owner",
                f"--dbname={database_url(name)}",
                str(dump),
            ],
            check=True,
            capture_output=True,
        )
        yield name
    finally:
        with psycopg.connect(database_url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
