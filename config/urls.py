from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny, IsAuthenticated

from projections.views import healthz

_docs_permission = AllowAny if settings.API_DOCS_PUBLIC else IsAuthenticated

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
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[_docs_permission]),
        name="docs",
    ),
]

handler404 = "bank.api.problems.handler404"
handler500 = "bank.api.problems.handler500"
