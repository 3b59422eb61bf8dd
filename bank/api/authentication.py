"""DRF's token, also under the word ``Bearer``: ``Authorization: Bearer <key>``.

A client generated from the OpenAPI document (openapi-python-client's ``AuthenticatedClient``,
openapi-generator's ``access_token``, Swagger UI's bearer field) sends the key after
``Bearer`` by default; DRF's ``TokenAuthentication`` reads only ``Token <key>``. Both name
the same DRF tokens: REST_FRAMEWORK lists DRF's class first (it answers the 401 challenge,
``WWW-Authenticate: Token``) and this one after it, which reads what that one leaves.
"""

from __future__ import annotations

from rest_framework.authentication import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """``Authorization: Bearer <key>`` with a DRF token (the word compared in any case)."""

    # The class name keeps "Token": the API records a command's actor as authenticated by
    # "token" when its authenticator's name says so (bank.api.views.actor_of).
    keyword = "Bearer"
