from __future__ import annotations

import os

import pytest
from django.db.backends.base.operations import BaseDatabaseOperations
from hypothesis import settings as hypothesis_settings

from tests.support import triggers_disabled

# The maker-checker rule is off in the tests unless a test turns it on (tests/approvals):
# the product's default (freeze and close always need a second person) would turn every
# other test's freeze and close into a request. Servers the tests start inherit this.
os.environ["APPROVAL_ALWAYS"] = ""
os.environ.pop("APPROVAL_THRESHOLD_CENTS", None)
os.environ.pop("APPROVAL_THRESHOLDS", None)


@pytest.fixture(autouse=True)
def _no_approval_rule(settings):
    settings.APPROVAL_ALWAYS = ""
    settings.APPROVAL_THRESHOLD_CENTS = None
    settings.APPROVAL_THRESHOLDS = ""


# In CI the property tests replay a fixed set of examples, so that a run is reproducible;
# `make fuzz` and local runs keep exploring new ones.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    hypothesis_settings.load_profile("ci")


def pytest_collection_modifyitems(config, items):
    """PostgreSQL-only tests run in the PostgreSQL pass of ``make test``, never on SQLite.

    They are deselected (not skipped) on SQLite; in CI the PostgreSQL pass is mandatory
    (.ci/run fails when PostgreSQL cannot be reached).
    """
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("postgres") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def _flush_through_immutability_triggers():
    """Let Django's transactional tests empty the append-only tables between tests.

    TransactionTestCase, ``transaction=True`` and ``live_server`` flush every table after
    each test; the triggers (rightly) refuse that, so the flush runs with them switched off
    and switched back on afterwards (tests/eventstore/test_immutability.py checks that).
    """
    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        with triggers_disabled(self.connection):
            return original(self, sql_list)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush
    try:
        yield
    finally:
        BaseDatabaseOperations.execute_sql_flush = original


# One SDK for the whole session (OpenTelemetry allows one provider per process): spans go to
# memory, so that any test can look at them; nothing leaves the process.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
SPANS = None
METRICS = None


@pytest.fixture(scope="session", autouse=True)
def _telemetry_in_memory():
    global SPANS, METRICS
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from config import telemetry

    SPANS, METRICS = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry.setup(span_exporter=SPANS, metric_reader=METRICS)
    yield


@pytest.fixture
def spans():
    SPANS.clear()
    return SPANS


@pytest.fixture
def metric_reader():
    return METRICS


@pytest.fixture
def is_postgres():
    from django.db import connection

    return connection.vendor == "postgresql"


def pytest_report_header(config):
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or db['NAME']}" + (
        " (CI)" if os.environ.get("CI") else ""
    )
