from __future__ import annotations

from csp.decorators import csp_update
from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny, IsAuthenticated

from projections.views import healthz

_docs_permission = AllowAny if settings.API_DOCS_PUBLIC else IsAuthenticated

# The API docs under the Content-Security-Policy: the split view serves Swagger UI's start-up
# script as a file of its own (``/api/docs/?script``) instead of inline, and the page's one
# inline <style> (drf-spectacular's swagger_ui.html, three rules) is allowed by its SHA-256,
# on this page only. tests/test_security.py checks the hash against the page.
SWAGGER_UI_STYLE_HASH = "'sha256-MMpT0iDxyjALd9PdfepImGX3DBfJPXZ4IlDWdPAgtn0='"
_docs_view = csp_update({"style-src": [SWAGGER_UI_STYLE_HASH]})(
    SpectacularSwaggerSplitView.as_view(url_name="schema", permission_classes=[_docs_permission])
)

urlpatterns = [
    # A newcomer opening the server's address lands on the back office (its login first).
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False), name="home"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/", include("bank.api.urls")),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(permission_classes=[_docs_permission]),
        name="schema",
    ),
    path("api/docs/", _docs_view, name="docs"),
]

handler404 = "bank.api.problems.handler404"
handler500 = "bank.api.problems.handler500"
