"""``{% integrity_panel %}``: the store's recorded integrity on the admin index."""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib import admin

from bank.selectors import integrity_panel as recorded_integrity
from projections.models import AccountBalance

register = template.Library()


@register.inclusion_tag("admin/bank/integrity_panel.html", takes_context=True)
def integrity_panel(context: dict[str, Any]) -> dict[str, Any]:
    """The panel for staff who may view accounts (nothing for others)."""
    request = context.get("request")
    if request is None or not admin.site.get_model_admin(AccountBalance).has_view_permission(
        request
    ):
        return {"panel": None}
    return {"panel": recorded_integrity()}
