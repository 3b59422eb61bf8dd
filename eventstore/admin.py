"""Events and snapshots in the admin: read-only for everyone, superusers included."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from .models import Event, Snapshot


def pretty_json(value: Any) -> str:
    return format_html(
        '<pre class="eventstore-json">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
    )


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # not generic at runtime
    """No add, change or delete for anyone; no actions (so no "delete selected")."""

    actions = None
    show_full_result_count = False  # no COUNT(*) over the whole store on every page

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        raise PermissionError("stored events and snapshots are never deleted")


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("position", "stream_id", "version", "event_type", "occurred_at", "actor")
    list_filter = ("event_type", "stream_type", ("occurred_at", admin.DateFieldListFilter))
    search_fields = ("event_type",)  # the real search is get_search_results below
    search_help_text = "a stream or event id, an actor's user name, or a correlation id"
    ordering = ("-position",)
    list_per_page = 50
    fields = (
        "position",
        "event_id",
        "stream_id",
        "stream_type",
        "version",
        "event_type",
        "schema_version",
        "occurred_at",
        "recorded_at",
        "actor",
        "pretty_data",
        "pretty_metadata",
        "commit_id",
        "hash",
    )
    readonly_fields = fields

    @admin.display(description="actor")
    def actor(self, event: Event) -> str:
        actor = (event.metadata or {}).get("actor")
        if isinstance(actor, dict):
            return str(actor.get("username", ""))
        return str(actor or "")

    @admin.display(description="data")
    def pretty_data(self, event: Event) -> str:
        return pretty_json(event.data)

    @admin.display(description="metadata")
    def pretty_metadata(self, event: Event) -> str:
        return pretty_json(event.metadata)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            value = uuid.UUID(term)
        except ValueError:
            return (
                queryset.filter(
                    Q(metadata__actor__username=term) | Q(metadata__correlation_id=term)
                ),
                False,
            )
        return (
            queryset.filter(
                Q(stream_id=value)
                | Q(event_id=value)
                | Q(metadata__correlation_id=str(value))
                | Q(metadata__causation_id=str(value))
            ),
            False,
        )


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    list_display = ("stream_id", "version", "schema_version", "created_at")
    list_filter = ("stream_type", "schema_version")
    ordering = ("-id",)
    fields = (
        "stream_id",
        "stream_type",
        "version",
        "schema_version",
        "created_at",
        "pretty_state",
    )
    readonly_fields = fields

    @admin.display(description="state")
    def pretty_state(self, snapshot: Snapshot) -> str:
        return pretty_json(snapshot.state)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        try:
            return queryset.filter(stream_id=uuid.UUID(search_term.strip())), False
        except ValueError:
            return queryset.none() if search_term.strip() else queryset, False

    search_fields = ("stream_type",)
