"""``/healthz``: unauthenticated, and reveals only which checks pass."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .health import check


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    health = check()
    return JsonResponse(
        {"status": "ok" if health.ok else "unhealthy", "checks": health.checks},
        status=200 if health.ok else 503,
    )
