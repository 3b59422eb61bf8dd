"""Money and ids in the admin's templates.

- ``{{ cents|money:currency }}``: "12,345.67 EUR" (currency units, the active language's
  separators); ``{{ cents|amount:currency }}``: the same without the code.
- ``{% short_id value %}`` / ``{% short_id value href %}``: the first characters of a long
  id, the whole id in ``title``, and a button that copies it (admin/base_site.html holds
  the few lines of script).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from bank.money_format import format_amount, format_money

register = template.Library()

SHORT_ID_LENGTH = 8


@register.filter
def money(amount_cents: int | None, currency: str) -> str:
    """Integer minor units as currency units with the code; empty for None."""
    return format_money(amount_cents, currency)


@register.filter
def amount(amount_cents: int | None, currency: str) -> str:
    """Integer minor units as currency units without the code; empty for None."""
    return format_amount(amount_cents, currency)


def short_id_html(value: Any, href: str = "") -> SafeString:
    """A long id shortened, the full value in ``title``, with a copy button beside it."""
    full = "" if value is None else str(value)
    if not full:
        return mark_safe("")
    shown = full if len(full) <= SHORT_ID_LENGTH + 1 else full[:SHORT_ID_LENGTH] + "…"
    code = format_html('<code class="short-id-value" title="{}">{}</code>', full, shown)
    if href.startswith(("http://", "https://")):  # a trace viewer, outside the admin
        code = format_html('<a href="{}" rel="noopener noreferrer">{}</a>', href, code)
    elif href:
        code = format_html('<a href="{}">{}</a>', href, code)
    return format_html(
        '<span class="short-id">{}<button type="button" class="copy-id" data-copy="{}" '
        'title="Copy {}" aria-label="Copy the full id {}">Copy</button></span>',
        code,
        full,
        full,
        full,
    )


@register.simple_tag
def short_id(value: Any, href: str = "") -> SafeString:
    return short_id_html(value, href)
