"""What caches may keep of an API answer: nothing.

Every answer of the API, problems and 304s included, is ``Cache-Control: no-store`` and
``Vary: Authorization, Cookie`` (added to whatever Vary other layers set). The answers are
bank data for one authenticated user: no browser, proxy or HTTP client cache may write
them to disk. That holds for a past state too (``?as_of_version=N``): it is immutable in
the ledger, but its copy on a client's disk is still a customer's data outside the bank's
control, and an erasure (ARCHITECTURE.md: personal data) changes what a past version
shows. Revalidation with ``If-None-Match`` gives clients the cheap re-read instead.
"""

from __future__ import annotations

from typing import Any

from django.utils.cache import patch_vary_headers

CACHE_CONTROL = "no-store"
VARY = ("Authorization", "Cookie")


def no_store(response: Any) -> Any:
    """Mark ``response`` as not to be stored, varying on the credentials."""
    response["Cache-Control"] = CACHE_CONTROL
    patch_vary_headers(response, VARY)
    return response
