"""One page format for every list: ``{count, next, previous, results}``.

Pages are numbered from 1 (``?page=``), ``?page_size=`` is 1 to 100 (20 by default). A
page past the end is not an error: it is a 200 with no results and the true ``count``, no
``next``, and a ``previous`` that links to the last page that has results (to page 1 when
there are none). A list that shrank between two requests, or a client that counted wrong,
then learns where the end is instead of being told the whole list is missing; a 404 stays
reserved for a resource that does not exist (an unknown account).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from rest_framework import serializers
from rest_framework.request import Request

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class PageQuery(serializers.Serializer):
    page = serializers.IntegerField(
        required=False,
        min_value=1,
        default=1,
        help_text="page number, from 1; a page past the end has no results",
    )
    page_size = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_PAGE_SIZE,
        default=DEFAULT_PAGE_SIZE,
        help_text=f"results per page, 1 to {MAX_PAGE_SIZE}",
    )


def page_of(
    request: Request,
    query: dict[str, Any],
    *,
    count: int,
    rows: Callable[[int, int], Any],
) -> dict[str, Any]:
    """The page ``query`` asks for: ``rows(offset, limit)`` is called only within the list.

    Args:
        request: the request (its query string makes the links).
        query: validated ``page`` and ``page_size``.
        count: how many items the whole list has.
        rows: fetches ``limit`` items from ``offset``.
    """
    page, size = query["page"], query["page_size"]
    offset = (page - 1) * size
    last = max(1, -(-count // size))
    return {
        "count": count,
        "next": _link(request, page + 1 if page < last else None),
        "previous": _link(request, min(page - 1, last) if page > 1 else None),
        "results": list(rows(offset, size)) if offset < count else [],
    }


def _link(request: Request, page: int | None) -> str | None:
    if page is None:
        return None
    params = request.query_params.copy()
    params["page"] = str(page)
    return request.build_absolute_uri(f"{request.path}?{urlencode(sorted(params.items()))}")
