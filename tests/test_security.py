"""Logins, sessions and the Content-Security-Policy (issue 18), through Django's stack.

Login throttling is django-axes: a user is locked out from one address after
LOGIN_FAILURE_LIMIT failures there. Sessions end after SESSION_IDLE_TIMEOUT_MINUTES without a
request or SESSION_COOKIE_AGE after their login (config/security.py). The browser's view of
the policy is tests/test_security_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from config import security
from config.urls import SWAGGER_UI_STYLE_HASH

pytestmark = pytest.mark.django_db

PASSWORD = "right-horse-battery"
LOGIN = "/admin/login/"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Dozens of logins per test: PBKDF2's deliberate cost is not what these tests measure.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff():
    User.objects.create_user("tom", password=PASSWORD, is_staff=True)
    User.objects.create_user("ann", password=PASSWORD, is_staff=True)


def log_in(client, username, password, **extra):
    form = {"username": username, "password": password, "next": "/admin/"}
    return client.post(LOGIN, form, **extra)


def logged_in(response):
    return response.status_code == 302 and response["Location"] == "/admin/"


def fail(client, username, times, **extra):
    """``times`` wrong passwords; the answers' status codes."""
    return [log_in(client, username, "wrong", **extra).status_code for _ in range(times)]


# --- login throttling ---------------------------------------------------------------------


def test_after_the_failure_limit_even_the_right_password_is_refused_until_axes_reset(
    staff, settings
):
    limit = settings.LOGIN_FAILURE_LIMIT
    client = Client()
    # Each failure before the limit is the login page again; the one that reaches it locks.
    assert fail(client, "tom", limit) == [200] * (limit - 1) + [429]
    response = log_in(client, "tom", PASSWORD)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    call_command("axes_reset", verbosity=0)
    assert logged_in(log_in(client, "tom", PASSWORD))
    assert client.get("/admin/").status_code == 200


def test_attempts_during_a_lockout_do_not_extend_it_and_it_ends_after_the_cool_off(
    staff, settings
):
    client = Client()
    fail(client, "tom", settings.LOGIN_FAILURE_LIMIT)
    locked_at = AccessAttempt.objects.get().attempt_time
    assert fail(client, "tom", 2) == [429, 429]
    assert log_in(client, "tom", PASSWORD).status_code == 429
    attempt = AccessAttempt.objects.get()
    assert attempt.attempt_time == locked_at  # the cool-off still counts from the lockout
    # The cool-off passes (the attempt's time moved back by it): the right password works.
    attempt.attempt_time = locked_at - timedelta(minutes=settings.LOGIN_COOLOFF_MINUTES)
    attempt.save()
    assert logged_in(log_in(client, "tom", PASSWORD))


def test_the_lockout_answer_is_a_readable_page_that_says_what_to_do(staff, settings):
    client = Client()
    fail(client, "tom", settings.LOGIN_FAILURE_LIMIT)
    response = log_in(client, "tom", PASSWORD)
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == str(settings.LOGIN_COOLOFF_MINUTES * 60)
    page = response.content.decode()
    assert f"<h1>{security.LOCKOUT_TITLE}</h1>" in page
    assert (
        security.LOCKOUT_MESSAGE.format(
            username="tom",
            limit=settings.LOGIN_FAILURE_LIMIT,
            minutes=settings.LOGIN_COOLOFF_MINUTES,
        )
        in page
    )
    assert "Ledgerline" in page  # the admin's own page, with its header
    assert "Content-Security-Policy" in response


def test_the_lockout_page_escapes_the_username_it_names(settings):
    client = Client()
    name = "<script>alert(1)</script>"
    responses = fail(client, name, settings.LOGIN_FAILURE_LIMIT)
    assert responses[-1] == 429
    page = log_in(client, name, "x").content.decode()
    assert name not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_lockout_is_per_user_and_address_so_another_user_there_still_logs_in(staff, settings):
    client = Client()
    fail(client, "tom", settings.LOGIN_FAILURE_LIMIT)
    assert log_in(client, "tom", PASSWORD).status_code == 429
    assert logged_in(log_in(Client(), "ann", PASSWORD))  # same address (127.0.0.1)
    # ... and the locked-out user still logs in from another address.
    assert logged_in(log_in(Client(REMOTE_ADDR="10.9.8.7"), "tom", PASSWORD))


def test_axes_reset_username_unlocks_one_user_and_leaves_the_others_locked(staff, settings):
    client = Client()
    for name in ("tom", "ann"):
        fail(client, name, settings.LOGIN_FAILURE_LIMIT)
    call_command("axes_reset_username", "tom", verbosity=0)
    assert logged_in(log_in(Client(), "tom", PASSWORD))
    assert log_in(Client(), "ann", PASSWORD).status_code == 429


def test_a_successful_login_forgets_the_earlier_failures(staff, settings):
    client = Client()
    fail(client, "tom", settings.LOGIN_FAILURE_LIMIT - 1)
    assert logged_in(log_in(client, "tom", PASSWORD))
    client.logout()
    # A full budget again: the next limit - 1 failures lock nothing.
    assert fail(client, "tom", settings.LOGIN_FAILURE_LIMIT - 1) == [200] * (
        settings.LOGIN_FAILURE_LIMIT - 1
    )
    assert logged_in(log_in(client, "tom", PASSWORD))


def test_the_admin_shows_the_attempts_and_lockouts_to_a_superuser(staff, settings):
    fail(Client(), "tom", settings.LOGIN_FAILURE_LIMIT)
    (attempt,) = AccessAttempt.objects.all()
    assert (attempt.username, attempt.ip_address) == ("tom", "127.0.0.1")
    assert attempt.failures_since_start == settings.LOGIN_FAILURE_LIMIT
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password=PASSWORD))
    page = admin.get("/admin/axes/accessattempt/")
    assert page.status_code == 200
    assert "tom" in page.content.decode() and "127.0.0.1" in page.content.decode()
    assert admin.get(f"/admin/axes/accessattempt/{attempt.pk}/change/").status_code == 200
    assert admin.get("/admin/axes/accesslog/").status_code == 200


def test_without_trusted_proxies_the_address_is_remote_addr_and_forwarded_for_is_ignored(
    staff, settings
):
    """Clients cannot pick their own address (and so a fresh failure budget) with a header."""
    assert settings.TRUSTED_PROXY_COUNT == 0
    client = Client()
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        log_in(client, "tom", "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    assert log_in(client, "tom", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.99").status_code == 429
    (attempt,) = AccessAttempt.objects.all()
    assert attempt.ip_address == "127.0.0.1"


def test_behind_a_trusted_proxy_the_address_is_the_one_the_proxy_saw(staff, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    client = Client()
    # Whatever the client puts in front, the proxy appends the address it was connected from.
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        log_in(client, "tom", "wrong", HTTP_X_FORWARDED_FOR=f"1.2.3.{n}, 198.51.100.7", **proxy)
    locked = log_in(client, "tom", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy)
    assert locked.status_code == 429
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["198.51.100.7"]
    # Another client behind the same proxy is another address.
    other = log_in(Client(), "tom", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.8", **proxy)
    assert logged_in(other)


class _Request:
    def __init__(self, **meta):
        self.META = meta


@pytest.mark.parametrize(
    "count, meta, expected",
    [
        (0, {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "1.1.1.1"}, "10.0.0.2"),
        (1, {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "1.1.1.1"}, "1.1.1.1"),
        (1, {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "9.9.9.9, 1.1.1.1"}, "1.1.1.1"),
        (
            2,
            {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "9.9.9.9,1.1.1.1,10.0.0.3"},
            "1.1.1.1",
        ),
        (1, {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": " 2001:db8::1 "}, "2001:db8::1"),
        # Fewer entries than proxies: it did not come through them all; garbage: not an address.
        (2, {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "1.1.1.1"}, "10.0.0.2"),
        (1, {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "not-an-ip"}, "10.0.0.2"),
        (1, {"REMOTE_ADDR": "10.0.0.2"}, "10.0.0.2"),
    ],
)
def test_the_client_address_comes_from_the_configured_source(settings, count, meta, expected):
    settings.TRUSTED_PROXY_COUNT = count
    assert security.client_ip(_Request(**meta)) == expected


# --- sessions -----------------------------------------------------------------------------


def _age(client, *, idle=0, since_login=0):
    """Move the session's clocks back, as if that many seconds had passed."""
    session = client.session
    session[security.SEEN_AT] -= idle
    session[security.STARTED_AT] -= since_login
    session.save()


@pytest.fixture
def tom_client(staff):
    client = Client()
    assert logged_in(log_in(client, "tom", PASSWORD))
    return client


def test_a_login_starts_both_session_clocks(tom_client):
    session = tom_client.session
    assert session[security.STARTED_AT] == session[security.SEEN_AT]
    assert isinstance(session[security.STARTED_AT], int)


def test_a_session_idle_past_the_timeout_is_logged_out_and_told_why(tom_client, settings):
    _age(tom_client, idle=settings.SESSION_IDLE_TIMEOUT_MINUTES * 60)
    response = tom_client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)
    assert "_auth_user_id" not in tom_client.session
    page = tom_client.get(response["Location"]).content.decode()
    assert security.IDLE_MESSAGE.format(minutes=settings.SESSION_IDLE_TIMEOUT_MINUTES) in page


def test_a_session_used_within_the_timeout_stays_and_its_idle_clock_restarts(tom_client, settings):
    idle = settings.SESSION_IDLE_TIMEOUT_MINUTES * 60 - 60
    _age(tom_client, idle=idle)
    seen = tom_client.session[security.SEEN_AT]
    assert tom_client.get("/admin/").status_code == 200
    assert tom_client.session[security.SEEN_AT] >= seen + idle
    # Another idle stretch just short of the timeout, counted from that request: still in.
    _age(tom_client, idle=idle)
    assert tom_client.get("/admin/").status_code == 200


def test_requests_within_a_minute_do_not_rewrite_the_session(tom_client, settings):
    first = tom_client.get("/admin/")
    assert first.status_code == 200
    assert settings.SESSION_COOKIE_NAME not in first.cookies  # nothing saved, no new cookie


def test_an_active_session_ends_at_the_cookie_age_after_its_login(tom_client, settings):
    _age(tom_client, since_login=settings.SESSION_COOKIE_AGE)
    response = tom_client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)
    page = tom_client.get(response["Location"]).content.decode()
    hours = settings.SESSION_COOKIE_AGE / 3600
    assert security.EXPIRED_MESSAGE.format(hours=hours) in page


def test_a_new_login_restarts_the_clocks(tom_client, settings):
    _age(tom_client, since_login=settings.SESSION_COOKIE_AGE - 60)
    old = tom_client.session[security.STARTED_AT]
    tom_client.logout()
    assert logged_in(log_in(tom_client, "tom", PASSWORD))
    assert tom_client.session[security.STARTED_AT] >= old + settings.SESSION_COOKIE_AGE - 60


def test_an_idle_timeout_of_zero_keeps_only_the_absolute_limit(tom_client, settings):
    settings.SESSION_IDLE_TIMEOUT_MINUTES = 0
    _age(tom_client, idle=10 * 3600)
    assert tom_client.get("/admin/").status_code == 200


def test_a_session_from_before_the_limits_gets_its_clocks_on_its_next_request(staff):
    client = Client()
    client.force_login(User.objects.get(username="tom"))
    session = client.session
    del session[security.STARTED_AT], session[security.SEEN_AT]
    session.save()
    assert client.get("/admin/").status_code == 200
    assert isinstance(client.session[security.STARTED_AT], int)


def test_api_tokens_are_not_sessions_and_are_left_alone(staff):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=User.objects.get(username="tom"))
    response = Client().get("/api/accounts/", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code in (200, 403)
    assert "sessionid" not in response.cookies


@pytest.mark.parametrize("at_close", [False, True])
def test_the_session_cookie_lasts_the_cookie_age_or_until_the_browser_closes(
    staff, settings, at_close
):
    settings.SESSION_EXPIRE_AT_BROWSER_CLOSE = at_close
    response = log_in(Client(), "tom", PASSWORD)
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["max-age"] == ("" if at_close else settings.SESSION_COOKIE_AGE)


# --- Content-Security-Policy --------------------------------------------------------------

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}


def _policy(response):
    header = response["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


@pytest.mark.parametrize("url", [LOGIN, "/api/schema/", "/healthz"])
def test_every_answer_carries_the_strict_policy(url):
    assert _policy(Client().get(url)) == POLICY


def test_the_api_docs_page_loads_its_script_as_a_file_and_allows_only_its_own_style():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    assert _policy(response) == {**POLICY, "style-src": f"'self' {SWAGGER_UI_STYLE_HASH}"}
    page = response.content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert '<script src="/api/docs/?script="></script>' in page
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" == SWAGGER_UI_STYLE_HASH
    script = Client().get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode()
