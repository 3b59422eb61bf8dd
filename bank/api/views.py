"""The REST API (ARCHITECTURE.md, "REST API"). Views only parse, call a service and render."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bank import selectors
from bank.domain import CURRENCIES
from bank.domain.text import DESCRIPTION_MAX, HOLDER_NAME_MAX, REASON_MAX
from bank.services import Actor
from bank.services import accounts as svc
from bank.services.errors import AccountNotFound

from .fields import AmountField, StrictIntegerField, StrictSerializer, TextField
from .idempotency import HEADER as IDEMPOTENCY_HEADER
from .idempotency import read_key, run_idempotent
from .problems import PROBLEM_CONTENT_TYPE

STATUSES = ("active", "frozen", "closed")


# --- shared pieces --------------------------------------------------------------------


class ProblemSerializer(serializers.Serializer):
    """An error (RFC 9457 problem details) as the API returns it."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="stable machine-readable error code")
    # The field's name is the problem document's (RFC 9457 extension), not the serializer's.
    errors = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="per-field errors (400 only)"
    )


def _problems(*statuses: int) -> dict[tuple[int, str], OpenApiResponse]:
    text = {
        400: "invalid input (code invalid_input or malformed_request)",
        401: "not authenticated",
        403: "the role may not do this",
        404: "no such account (account_not_found), version or time",
        409: "concurrent writers kept winning (concurrency_conflict)",
        412: "If-Match names a stale version (version_mismatch)",
        422: "a business rule refused the command (insufficient_funds, account_not_active, "
        "invalid_amount, invalid_state_transition, balance_not_zero, invalid_transfer, "
        "invalid_input, idempotency_key_reused)",
        429: "throttled",
        503: "the database is unavailable (database_unavailable)",
    }
    return {
        (s, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=text[s])
        for s in statuses
    }


class AccountOutput(serializers.Serializer):
    id = serializers.UUIDField()
    holder_name = serializers.CharField()
    currency = serializers.CharField()
    balance_cents = serializers.IntegerField()
    status = serializers.ChoiceField(choices=STATUSES)
    version = serializers.IntegerField()


def _page_of(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The schema of a page: ``{count, next, previous, results}``."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item(many=True),
        },
    )


AccountPage = _page_of(AccountOutput, "AccountPage")


IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description='run only if the account is at this version ("3", W/"3" or 3); else 412',
    pattern=r'^(W/)?"?[0-9]{1,18}"?$',
)
IDEMPOTENCY_KEY = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="a retry with the same key and body replays the first answer",
    pattern=r"^[ -~]{1,255}$",
)
COMMAND_ERRORS = _problems(400, 401, 403, 404, 409, 412, 422, 429, 503)


def actor_of(request: Request) -> Actor:
    authenticator = type(request.successful_authenticator).__name__
    auth = "token" if "Token" in authenticator else "session"
    return Actor.from_user(request.user, auth=auth)


def correlation_of(request: Request) -> uuid.UUID | None:
    value = request.headers.get("X-Correlation-ID")
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationError({"X-Correlation-ID": ["must be a UUID"]}) from None


def expected_version_of(request: Request) -> int | None:
    """Read If-Match: a bare version number or an ETag ("3", W/"3")."""
    value = request.headers.get("If-Match")
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit() or len(text) > 18:
        raise ValidationError({"If-Match": ['must be an account version, e.g. "3"']})
    return int(text)


def account_response(state: svc.AccountState, status: int = 200) -> Response:
    response = Response(AccountOutput(state).data, status=status)
    response["ETag"] = f'"{state.version}"'
    return response


def command_kwargs(request: Request, key: str | None) -> dict[str, Any]:
    return {
        "actor": actor_of(request),
        "correlation_id": correlation_of(request),
        "idempotency_key": key,
    }


@extend_schema_field(OpenApiTypes.DATETIME)
class DateTimeText(serializers.CharField):
    """An RFC 3339 date-time, parsed by the view so that a missing time zone is an error."""


class Pagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


# --- accounts -------------------------------------------------------------------------


class AccountCollectionApi(APIView):
    """GET: list accounts (balance read model). POST: open an account."""

    class ListQuery(serializers.Serializer):
        status = serializers.ChoiceField(choices=STATUSES, required=False)
        search = TextField(required=False, max_length=HOLDER_NAME_MAX, allow_blank=True)
        page = serializers.IntegerField(required=False, min_value=1)
        page_size = serializers.IntegerField(required=False, min_value=1, max_value=100)

    class OpenInput(StrictSerializer):
        holder_name = TextField(max_length=HOLDER_NAME_MAX)
        currency = serializers.ChoiceField(choices=sorted(CURRENCIES), default="EUR")
        initial_balance_cents = StrictIntegerField(min_value=0, max_value=2**53 - 1, default=0)

    @extend_schema(
        operation_id="accounts_list",
        parameters=[ListQuery],
        responses={200: AccountPage, **_problems(400, 401, 403, 404, 429, 503)},
    )
    def get(self, request: Request) -> Response:
        query = self.ListQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        accounts = selectors.account_list(
            status=query.validated_data.get("status"), search=query.validated_data.get("search")
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(accounts, request, view=self)
        rows = [
            {
                "id": a.account_id,
                "holder_name": a.holder_name,
                "currency": a.currency,
                "balance_cents": a.balance_cents,
                "status": a.status,
                "version": a.version,
            }
            for a in page or []
        ]
        return paginator.get_paginated_response(AccountOutput(rows, many=True).data)

    @extend_schema(
        operation_id="accounts_open",
        request=OpenInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: AccountOutput, **_problems(400, 401, 403, 409, 422, 429, 503)},
    )
    def post(self, request: Request) -> Response:
        data = self.OpenInput(data=request.data)
        data.is_valid(raise_exception=True)
        key = read_key(request)

        def open_() -> Response:
            state = svc.open_account(**data.validated_data, **command_kwargs(request, key))
            response = account_response(state, status=201)
            response["Location"] = f"/api/accounts/{state.id}/"
            return response

        return run_idempotent(request, key, open_)


class AccountDetailApi(APIView):
    """The account's state from its events (strongly consistent), now or at a past point."""

    class Query(serializers.Serializer):
        as_of_version = serializers.IntegerField(required=False, min_value=1, max_value=2**31)
        as_of = DateTimeText(required=False, help_text="ISO-8601 date-time with a time zone")

        def validate_as_of(self, value: str) -> Any:
            try:
                moment = parse_datetime(value)
            except ValueError:
                moment = None
            if moment is None:
                raise ValidationError("must be an ISO-8601 date-time, e.g. 2026-01-31T12:00:00Z")
            if moment.tzinfo is None:
                raise ValidationError("must carry a time zone (Z or +01:00)")
            try:
                return moment.astimezone(UTC)
            except OverflowError:
                # Within a day of the calendar's ends: before anything, or after everything.
                return (
                    datetime.min.replace(tzinfo=UTC)
                    if moment.year == 1
                    else datetime.max.replace(tzinfo=UTC)
                )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if "as_of_version" in attrs and "as_of" in attrs:
                raise ValidationError("give as_of_version or as_of, not both")
            return attrs

    @extend_schema(
        operation_id="accounts_retrieve",
        parameters=[Query],
        responses={200: AccountOutput, **_problems(400, 401, 403, 404, 429, 503)},
    )
    def get(self, request: Request, account_id: uuid.UUID) -> Response:
        query = self.Query(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        version = query.validated_data.get("as_of_version")
        moment = query.validated_data.get("as_of")
        if version is not None or moment is not None:
            state = selectors.account_at(account_id, version=version, at=moment)
        else:
            state = selectors.get_account(account_id)
        return account_response(state)


class _CommandApi(APIView):
    """Base of the single-account commands: parse, If-Match, Idempotency-Key, call, render."""

    Input: type[StrictSerializer]
    service: Callable[..., svc.AccountState]

    def post(self, request: Request, account_id: uuid.UUID) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        expected = expected_version_of(request)
        key = read_key(request)
        return run_idempotent(
            request,
            key,
            lambda: account_response(
                type(self).service(
                    account_id=account_id,
                    expected_version=expected,
                    **command_kwargs(request, key),
                    **data.validated_data,
                )
            ),
        )


class _MoneyInput(StrictSerializer):
    amount_cents = AmountField()
    description = TextField(max_length=DESCRIPTION_MAX, allow_blank=True, default="")


class _ReasonInput(StrictSerializer):
    reason = TextField(max_length=REASON_MAX)


def _command_view(name: str, input_class: type[StrictSerializer], doc: str) -> type[_CommandApi]:
    class View(_CommandApi):
        Input = input_class
        service = getattr(svc, name)

        @extend_schema(
            operation_id=f"accounts_{name}",
            request=input_class,
            parameters=[IF_MATCH, IDEMPOTENCY_KEY],
            responses={200: AccountOutput, **COMMAND_ERRORS},
            description=doc,
        )
        def post(self, request: Request, account_id: uuid.UUID) -> Response:
            return super().post(request, account_id)

    View.__name__ = View.__qualname__ = f"Account{name.capitalize()}Api"
    View.__doc__ = doc
    return View


AccountDepositApi = _command_view("deposit", _MoneyInput, "Deposit money into the account.")
AccountWithdrawApi = _command_view("withdraw", _MoneyInput, "Withdraw money from the account.")
AccountFreezeApi = _command_view("freeze", _ReasonInput, "Freeze the account: no movements.")
AccountUnfreezeApi = _command_view("unfreeze", _ReasonInput, "Unfreeze a frozen account.")
AccountCloseApi = _command_view("close", _ReasonInput, "Close an account whose balance is 0.")


class TransferCreateApi(APIView):
    """Move money between two accounts of one currency, atomically over both streams."""

    class Input(StrictSerializer):
        from_account = serializers.UUIDField()
        to_account = serializers.UUIDField()
        amount_cents = AmountField()
        description = TextField(max_length=DESCRIPTION_MAX, allow_blank=True, default="")

    class Output(serializers.Serializer):
        transfer_id = serializers.UUIDField()
        from_account = AccountOutput()
        to_account = AccountOutput()

    @extend_schema(
        operation_id="transfers_create",
        request=Input,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: Output, **_problems(400, 401, 403, 404, 409, 422, 429, 503)},
    )
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        key = read_key(request)

        def transfer() -> Response:
            result = svc.transfer(**data.validated_data, **command_kwargs(request, key))
            return Response(
                self.Output(
                    {
                        "transfer_id": result.transfer_id,
                        "from_account": result.source,
                        "to_account": result.target,
                    }
                ).data
            )

        return run_idempotent(request, key, transfer)


# --- history --------------------------------------------------------------------------


class EventOutput(serializers.Serializer):
    event_id = serializers.UUIDField()
    position = serializers.IntegerField()
    version = serializers.IntegerField()
    event_type = serializers.CharField()
    schema_version = serializers.IntegerField()
    data = serializers.JSONField()  # type: ignore[assignment]  # the event's field name
    metadata = serializers.JSONField()
    occurred_at = serializers.DateTimeField()


class PageQuery(serializers.Serializer):
    page = serializers.IntegerField(required=False, min_value=1, default=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)


def _page_link(request: Request, page: int | None) -> str | None:
    if page is None:
        return None
    params = request.query_params.copy()
    params["page"] = str(page)
    return request.build_absolute_uri(f"{request.path}?{urlencode(sorted(params.items()))}")


class AccountEventsApi(APIView):
    """The account's events in version order, paginated (straight from the event store)."""

    @extend_schema(
        operation_id="accounts_events",
        parameters=[PageQuery],
        responses={
            200: _page_of(EventOutput, "EventPage"),
            **_problems(400, 401, 403, 404, 429, 503),
        },
    )
    def get(self, request: Request, account_id: uuid.UUID) -> Response:
        query = PageQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        page, size = query.validated_data["page"], query.validated_data["page_size"]
        count = selectors.account_version(account_id)
        if count == 0:
            raise AccountNotFound(account_id)
        events = (
            selectors.account_events(account_id, after_version=(page - 1) * size, limit=size)
            if (page - 1) * size < count
            else []
        )
        return Response(
            {
                "count": count,
                "next": _page_link(request, page + 1 if page * size < count else None),
                "previous": _page_link(request, page - 1 if page > 1 else None),
                "results": EventOutput(events, many=True).data,
            }
        )


class TransactionOutput(serializers.Serializer):
    version = serializers.IntegerField()
    kind = serializers.CharField()
    amount_cents = serializers.IntegerField()
    balance_after_cents = serializers.IntegerField()
    description = serializers.CharField()
    counterparty = serializers.UUIDField(allow_null=True)
    transfer_id = serializers.UUIDField(allow_null=True)
    actor = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    position = serializers.IntegerField()


class AccountTransactionsApi(APIView):
    """The account's money movements (transaction-history read model), paginated."""

    @extend_schema(
        operation_id="accounts_transactions",
        parameters=[PageQuery],
        responses={
            200: _page_of(TransactionOutput, "TransactionPage"),
            **_problems(400, 401, 403, 404, 429, 503),
        },
    )
    def get(self, request: Request, account_id: uuid.UUID) -> Response:
        PageQuery(data=request.query_params.dict()).is_valid(raise_exception=True)
        rows = selectors.transactions(account_id)
        paginator = Pagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(TransactionOutput(page, many=True).data)
