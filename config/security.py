"""Logins and sessions: the client address django-axes counts failures by, the page a
locked-out login gets, and the idle and absolute limits of a session.

Settings (README "Configuration"): ``TRUSTED_PROXY_COUNT``, ``LOGIN_FAILURE_LIMIT``,
``LOGIN_COOLOFF_MINUTES``, ``SESSION_COOKIE_AGE_HOURS``, ``SESSION_IDLE_TIMEOUT_MINUTES``.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

# Session keys (underscored like Django's own ``_auth_user_id``): when this login began and
# when a request of it was last seen, in whole seconds since the epoch (the session is JSON).
STARTED_AT = "_session_started_at"
SEEN_AT = "_session_seen_at"
# The last-seen stamp is rewritten at most once a minute, so that an active session is not
# saved to the database on every request; the idle limit is therefore kept to the minute.
SEEN_RESOLUTION_SECONDS = 60

LOCKOUT_TITLE = "Too many failed logins"
LOCKOUT_MESSAGE = (
    "Logging in as {username} from this address failed {limit} times in a row, so it is "
    "locked for {minutes} minutes. Try again after that, or ask an administrator to unlock it "
    "(python manage.py axes_reset_username {username})."
)
IDLE_MESSAGE = "Your session ended after {minutes} minutes without activity: log in again."
EXPIRED_MESSAGE = "Your session ended after {hours:g} hours: log in again."


def client_ip(request: HttpRequest) -> str | None:
    """The address a login comes from, as django-axes counts it (``AXES_CLIENT_IP_CALLABLE``).

    ``REMOTE_ADDR`` (the peer of the connection) unless ``TRUSTED_PROXY_COUNT`` proxies stand
    in front: each of them appends the address it was connected from to
    ``X-Forwarded-For``, so the client is the entry that many places from the right. Entries
    left of it are whatever the client sent and are never trusted. A request that did not
    come through all of them (too few entries) or carries no address there is counted by
    its ``REMOTE_ADDR``.
    """
    remote: str | None = request.META.get("REMOTE_ADDR")
    count: int = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = [hop for hop in hops if hop]
    if len(hops) < count:
        return remote
    candidate = hops[-count]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """The answer to a login while its user and address are locked out (``AXES_LOCKOUT_CALLABLE``).

    The admin's own page (header, styles, no script of its own) with what happened and what
    to do, answered 429 like axes' default.
    """
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    context = {
        **admin.site.each_context(request),
        "is_nav_sidebar_enabled": False,
        "title": LOCKOUT_TITLE,
        "content": LOCKOUT_MESSAGE.format(
            username=username or "this user",
            limit=settings.AXES_FAILURE_LIMIT,
            minutes=settings.LOGIN_COOLOFF_MINUTES,
        ),
    }
    response = TemplateResponse(request, "admin/base_site.html", context, status=429)
    response["Retry-After"] = str(settings.LOGIN_COOLOFF_MINUTES * 60)
    return response.render()


@receiver(user_logged_in, dispatch_uid="config.security.stamp_login")
def stamp_login(sender: object, request: HttpRequest | None, **kwargs: object) -> None:
    """A new login starts both of its session's clocks (a re-login restarts them)."""
    if request is not None and hasattr(request, "session"):
        now = int(time.time())
        request.session[STARTED_AT] = now
        request.session[SEEN_AT] = now


class SessionTimeoutMiddleware:
    """Ends a logged-in session after ``SESSION_IDLE_TIMEOUT_MINUTES`` without a request, or
    ``SESSION_COOKIE_AGE_HOURS`` after its login, whichever comes first.

    Django alone has one age per session, renewed whenever the session is saved: either a
    fixed end (and an idle session lives on until it) or a sliding one (and an active session
    lives for ever). This keeps both limits in the session itself and checks them on each
    request; the session's cookie and row keep Django's ``SESSION_COOKIE_AGE`` as the outer
    bound. An ended session is logged out (its data flushed) before the view runs, so the
    request goes on as anonymous: the admin sends it to the login page, which says why.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            self._check(request, int(time.time()))
        return self.get_response(request)

    def _check(self, request: HttpRequest, now: int) -> None:
        session = request.session
        started, seen = session.get(STARTED_AT), session.get(SEEN_AT)
        if not isinstance(started, int) or not isinstance(seen, int):
            # A session from before these limits: its clocks start now.
            session[STARTED_AT] = session[SEEN_AT] = now
            return
        idle_limit = settings.SESSION_IDLE_TIMEOUT_MINUTES * 60
        if idle_limit and now - seen >= idle_limit:
            self._end(request, IDLE_MESSAGE.format(minutes=settings.SESSION_IDLE_TIMEOUT_MINUTES))
        elif now - started >= settings.SESSION_COOKIE_AGE:
            self._end(request, EXPIRED_MESSAGE.format(hours=settings.SESSION_COOKIE_AGE / 3600))
        elif now - seen >= SEEN_RESOLUTION_SECONDS:
            session[SEEN_AT] = now

    @staticmethod
    def _end(request: HttpRequest, message: str) -> None:
        logout(request)
        messages.info(request, message, fail_silently=True)
