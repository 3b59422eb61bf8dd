"""Settings come from the environment, with safe defaults for the embedded quick start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import TEST_PII_KEY, TEST_SIGNING_KEY

ROOT = Path(__file__).resolve().parent.parent


def _settings(env, cwd=ROOT):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL", "EVENTSTORE_SIGNING_KEY")
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, config.settings as s; print(json.dumps([s.DEBUG, str(s.DATABASES['default']['NAME']), s.SNAPSHOT_INTERVAL]))",
        ],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
    )


def test_without_debug_a_secret_key_is_required():
    result = _settings({"DEBUG": "false"})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_gets_a_development_key_and_the_sqlite_file_lives_in_the_project(tmp_path):
    result = _settings({"DEBUG": "true"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f'[true, "{ROOT / "db.sqlite3"}", 100]'


def test_without_debug_a_signing_key_is_required_and_must_be_well_formed(tmp_path):
    base = {
        "DEBUG": "false",
        "SECRET_KEY": "a-production-like-key-of-more-than-32-characters",
        "PII_MASTER_KEYS": TEST_PII_KEY,
    }
    result = _settings(base)
    assert result.returncode != 0
    assert "EVENTSTORE_SIGNING_KEY is not set" in result.stderr
    assert "signing_key --new" in result.stderr
    for value, message in [
        ("k1:not-base64!", "EVENTSTORE_SIGNING_KEY: not valid base64"),
        ("k1:" + "QUJD", "3 bytes after base64; an Ed25519 key has 32"),
        ("no key id here", "expected key_id:base64"),
        ("dev:" + TEST_SIGNING_KEY.split(":")[1], "kept for the development key"),
        (str(tmp_path / "missing.key"), "cannot read"),
    ]:
        result = _settings({**base, "EVENTSTORE_SIGNING_KEY": value})
        assert result.returncode != 0, value
        assert message in result.stderr, (value, result.stderr[-500:])
    # A file holding the key works; so do verify keys naming other key ids.
    key_file = tmp_path / "signing.key"
    key_file.write_text(TEST_SIGNING_KEY + "\n")
    other = "old:" + "A" * 43 + "="
    result = _settings(
        {**base, "EVENTSTORE_SIGNING_KEY": str(key_file), "EVENTSTORE_VERIFY_KEYS": other}
    )
    assert result.returncode == 0, result.stderr
    # The signing key's id listed with another public key is refused.
    result = _settings(
        {
            **base,
            "EVENTSTORE_SIGNING_KEY": TEST_SIGNING_KEY,
            "EVENTSTORE_VERIFY_KEYS": "test-prod:" + "A" * 43 + "=",
        }
    )
    assert "another public key" in result.stderr


def test_snapshot_interval_must_be_positive():
    result = _settings({"DEBUG": "true", "SNAPSHOT_INTERVAL": "0"})
    assert "SNAPSHOT_INTERVAL must be a positive" in result.stderr


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-production-like-key-of-more-than-32-characters-0123456789",
    "ALLOWED_HOSTS": "testserver,bank.example",
    "EVENTSTORE_SIGNING_KEY": TEST_SIGNING_KEY,
    "PII_MASTER_KEYS": TEST_PII_KEY,
}


def _run(code, env, cwd=ROOT):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL", "ALLOWED_HOSTS")
    }
    return subprocess.run(
        [sys.executable, *code],
        env={**clean, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_the_development_key_and_short_keys():
    for key in ("dev-only-insecure-key-do-not-use-in-production", "short"):
        result = _settings({"DEBUG": "false", "SECRET_KEY": key})
        assert result.returncode != 0
        assert "production needs its own long random key" in result.stderr


def test_check_deploy_passes_with_production_settings(tmp_path):
    env = {**PRODUCTION, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_sets_secure_cookies_hsts_and_the_other_headers(tmp_path):
    env = {
        **PRODUCTION,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "BEHIND_TLS_PROXY": "true",
    }
    code = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
client = Client()
plain = client.get("/api/accounts/")
secure = client.get("/api/accounts/", HTTP_X_FORWARDED_PROTO="https")
probe = client.get("/healthz")
print(json.dumps({
    "redirect": [plain.status_code, plain.get("Location")],
    "secure": [secure.status_code, dict(secure.headers)],
    "probe": probe.status_code,
    "cookies": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE,
                settings.SESSION_COOKIE_HTTPONLY],
}))
"""
    result = _run(["-c", code], env)
    assert result.returncode == 0, result.stderr
    import json

    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["redirect"] == [301, "https://testserver/api/accounts/"]
    status, headers = found["secure"]
    assert status == 401  # over HTTPS the API answers (and wants a token)
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert found["probe"] in (200, 503)  # /healthz is not redirected: probes use plain HTTP
    assert found["cookies"] == [True, True, True]


def test_production_serves_the_admins_static_files_after_collectstatic(tmp_path):
    env = {
        **PRODUCTION,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "STATIC_ROOT": str(tmp_path / "static"),
        "BEHIND_TLS_PROXY": "true",
    }
    collected = _run(["manage.py", "collectstatic", "--no-input", "-v", "0"], env)
    assert collected.returncode == 0, collected.stderr
    code = """
import django
django.setup()
from django.test import Client
response = Client().get("/static/admin/css/base.css", HTTP_X_FORWARDED_PROTO="https")
print(f"{response.status_code}|{response['Content-Type']}")
"""
    result = _run(["-c", code], env)
    assert result.returncode == 0, result.stderr
    status, content_type = result.stdout.strip().splitlines()[-1].split("|")
    assert status == "200" and content_type.startswith("text/css")


def test_a_verifier_with_public_keys_only_verifies_and_cannot_write(tmp_path):
    """An auditor's copy runs with EVENTSTORE_VERIFY_KEYS alone (no DEBUG, no signing key)."""
    database = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    writer = {**PRODUCTION, **database}
    for args in (
        ["manage.py", "migrate", "--no-input"],
        [
            "manage.py",
            "shell",
            "-c",
            "from bank.services import Actor, accounts as svc; "
            "svc.open_account(holder_name='Audited', actor=Actor.system('t'))",
        ],
        ["manage.py", "signing_key", "--public"],
    ):
        result = _run(args, writer)
        assert result.returncode == 0, result.stderr
    public = result.stdout.strip()
    assert public.startswith("test-prod:")
    verifier = {
        **PRODUCTION,
        **database,
        "EVENTSTORE_SIGNING_KEY": "",
        "EVENTSTORE_VERIFY_KEYS": public,
    }
    result = _run(["manage.py", "verify_events", "--full"], verifier)
    assert result.returncode == 0, result.stderr
    assert "all chains and seals intact" in result.stdout
    result = _run(
        [
            "manage.py",
            "shell",
            "-c",
            "from bank.services import Actor, accounts as svc; "
            "svc.open_account(holder_name='Forged', actor=Actor.system('t'))",
        ],
        verifier,
    )
    assert result.returncode != 0
    assert "holds public keys only" in result.stderr


def test_each_log_record_is_one_line_with_its_trace_ids(tmp_path):
    code = (
        "import django, logging; django.setup();"
        "from opentelemetry import trace;"
        "from opentelemetry.sdk.trace import TracerProvider;"
        "tracer = TracerProvider().get_tracer('t');"
        "logging.getLogger('django.request').warning('outside');"
        "logging.getLogger('django.server').info('served');"
        "span = tracer.start_span('x');"
        "ctx = trace.set_span_in_context(span);"
        "from opentelemetry import context; token = context.attach(ctx);"
        "logging.getLogger('bank').warning('inside');"
        "print(format(span.get_span_context().trace_id, '032x'))"
    )
    result = _run(
        ["-c", code], {"DEBUG": "true", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert sum("outside" in line for line in lines) == 1
    assert sum("served" in line for line in lines) == 1
    (inside,) = [line for line in lines if "inside" in line]
    assert f"trace_id={result.stdout.strip()}" in inside and "span_id=" in inside


def _security_settings(env):
    code = """
import json, config.settings as s
print(json.dumps({
    "limit": s.AXES_FAILURE_LIMIT,
    "cooloff_seconds": s.AXES_COOLOFF_TIME.total_seconds(),
    "lockout_by": s.AXES_LOCKOUT_PARAMETERS,
    "proxies": s.TRUSTED_PROXY_COUNT,
    "cookie_age": s.SESSION_COOKIE_AGE,
    "idle_minutes": s.SESSION_IDLE_TIMEOUT_MINUTES,
    "at_browser_close": s.SESSION_EXPIRE_AT_BROWSER_CLOSE,
    "backends": s.AUTHENTICATION_BACKENDS,
    "last_middleware": s.MIDDLEWARE[-1],
}))
"""
    return _run(["-c", code], {"DEBUG": "true", **env})


def test_login_throttling_and_session_limits_have_safe_defaults():
    import json

    result = _security_settings({})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "limit": 5,
        "cooloff_seconds": 15 * 60,
        "lockout_by": [["username", "ip_address"]],
        "proxies": 0,
        "cookie_age": 8 * 3600,
        "idle_minutes": 30,
        "at_browser_close": False,
        "backends": [
            "axes.backends.AxesStandaloneBackend",
            "django.contrib.auth.backends.ModelBackend",
        ],
        "last_middleware": "axes.middleware.AxesMiddleware",
    }


def test_login_throttling_and_session_limits_come_from_the_environment():
    import json

    result = _security_settings(
        {
            "LOGIN_FAILURE_LIMIT": "3",
            "LOGIN_COOLOFF_MINUTES": "60",
            "TRUSTED_PROXY_COUNT": "2",
            "SESSION_COOKIE_AGE_HOURS": "0.5",
            "SESSION_IDLE_TIMEOUT_MINUTES": "0",
            "SESSION_EXPIRE_AT_BROWSER_CLOSE": "true",
        }
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert (found["limit"], found["cooloff_seconds"], found["proxies"]) == (3, 3600, 2)
    assert (found["cookie_age"], found["idle_minutes"], found["at_browser_close"]) == (
        1800,
        0,
        True,
    )


def test_nonsensical_login_and_session_limits_are_refused_at_start():
    for env, message in [
        ({"LOGIN_FAILURE_LIMIT": "0"}, "LOGIN_FAILURE_LIMIT and LOGIN_COOLOFF_MINUTES must be"),
        ({"LOGIN_COOLOFF_MINUTES": "0"}, "LOGIN_FAILURE_LIMIT and LOGIN_COOLOFF_MINUTES must be"),
        ({"SESSION_COOKIE_AGE_HOURS": "0"}, "SESSION_COOKIE_AGE_HOURS must be at least"),
        ({"SESSION_IDLE_TIMEOUT_MINUTES": "-1"}, "SESSION_IDLE_TIMEOUT_MINUTES zero"),
        ({"TRUSTED_PROXY_COUNT": "-1"}, "TRUSTED_PROXY_COUNT must be"),
    ]:
        result = _security_settings(env)
        assert result.returncode != 0, env
        assert message in result.stderr, (env, result.stderr[-400:])


def _approval_settings(env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APPROVAL_") and k != "DEBUG"}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import config.settings as s; from bank.services.policy import ApprovalPolicy as P; "
            "p = P.parse(threshold_cents=s.APPROVAL_THRESHOLD_CENTS, "
            "thresholds=s.APPROVAL_THRESHOLDS, always=s.APPROVAL_ALWAYS, "
            "ttl_hours=s.APPROVAL_TTL_HOURS); "
            "print(sorted(p.always), p.threshold_cents, p.thresholds, p.ttl.total_seconds())",
        ],
        env={**clean, "PYTHONPATH": str(ROOT), "DEBUG": "true", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_maker_checker_rule_defaults_to_freeze_and_close_always():
    result = _approval_settings({})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['close', 'freeze'] None {} 259200.0"


def test_the_maker_checker_rule_comes_from_the_environment():
    result = _approval_settings(
        {
            "APPROVAL_ALWAYS": "close",
            "APPROVAL_THRESHOLD_CENTS": "500000",
            "APPROVAL_THRESHOLDS": "EUR=1000000, JPY=100000",
            "APPROVAL_TTL_HOURS": "8",
        }
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['close'] 500000 {'EUR': 1000000, 'JPY': 100000} 28800.0"


def test_a_malformed_maker_checker_rule_stops_the_process_at_start():
    for env, message in [
        ({"APPROVAL_THRESHOLDS": "EURO=5"}, "is not CODE=AMOUNT"),
        ({"APPROVAL_THRESHOLDS": "EUR=5,EUR=6"}, "EUR is given twice"),
        ({"APPROVAL_THRESHOLDS": "EUR=0"}, "must be from 1"),
        ({"APPROVAL_ALWAYS": "freeze,deposit"}, "deposit not among"),
        ({"APPROVAL_THRESHOLD_CENTS": "-1"}, "APPROVAL_THRESHOLD_CENTS=-1"),
        ({"APPROVAL_TTL_HOURS": "0"}, "APPROVAL_TTL_HOURS=0"),
    ]:
        result = _approval_settings(env)
        assert result.returncode != 0, env
        assert "maker-checker settings" in result.stderr and message in result.stderr, (
            env,
            result.stderr[-400:],
        )


def test_without_debug_a_personal_data_master_key_is_required_and_not_the_development_one():
    base = {k: v for k, v in PRODUCTION.items() if k != "PII_MASTER_KEYS"}
    result = _settings(base)
    assert result.returncode != 0
    assert "PII_MASTER_KEYS is required without DEBUG" in result.stderr
    assert "personal_data_key --new" in result.stderr
    from bank.privacy import dev_master_key_text

    result = _settings({**base, "PII_MASTER_KEYS": dev_master_key_text()})
    assert "development key (id 'dev') is public and refused" in result.stderr
    result = _settings({**base, "PII_MASTER_KEYS": "k1:c2hvcnQ="})
    assert "key k1 has 5 bytes, not 32" in result.stderr
    assert _settings({**base, "PII_MASTER_KEYS": TEST_PII_KEY}).returncode == 0
