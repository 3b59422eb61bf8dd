"""The REST API (ARCHITECTURE.md, "REST API"). Views only parse, call a service and render."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import eventstore as es
from bank import access_log, selectors
from bank.domain.text import DESCRIPTION_MAX, HOLDER_NAME_MAX, REASON_MAX
from bank.services import Actor, encryption
from bank.services import accounts as svc
from bank.services.errors import AccountNotFound

from . import consistency
from .caching import no_store
from .conditional import Preconditions, etag_of
from .fields import (
    AccountStatusField,
    AmountField,
    CurrencyField,
    EventTypeField,
    StrictIntegerField,
    StrictSerializer,
    StrictUUIDField,
    TextField,
    TransactionKindField,
)
from .idempotency import read_key, run_idempotent
from .maker_checker import (
    APPROVAL_ACCEPTED,
    APPROVAL_LOCATION,
    IDEMPOTENCY_REPLAYED,
    MAKER_CHECKER_PROBLEMS,
    ApprovalAsk,
    ask_approval_if_needed,
    with_approval_location,
)
from .pagination import PageQuery, page_of
from .schema import (
    ACCOUNTS,
    COMMANDS,
    ETAG,
    EVENT_POSITION_HEADER,
    HISTORY,
    IDEMPOTENCY_KEY,
    IF_MATCH_COMMAND,
    IF_MATCH_READ,
    IF_NONE_MATCH_COMMAND,
    IF_NONE_MATCH_READ,
    LOCATION,
    READ_MODEL_PARAMETERS,
    READ_MODEL_PROBLEMS,
    TRANSFERS,
    X_CORRELATION_ID,
    ApiSchema,
    problems,
)

log = logging.getLogger("bank.api")

# --- shared pieces --------------------------------------------------------------------


class ApiView(APIView):
    """Every view of the API: documented by ``ApiSchema``, never stored by a cache."""

    schema = ApiSchema()

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        # Every answer passes here, problems included (DRF's exception handling too).
        return no_store(super().finalize_response(request, response, *args, **kwargs))


@extend_schema_serializer(component_name="Account")
class AccountOutput(serializers.Serializer):
    id = serializers.UUIDField()
    holder_name = serializers.CharField()
    currency = CurrencyField()
    balance_cents = serializers.IntegerField()
    status = AccountStatusField()
    version = serializers.IntegerField(
        help_text="the number of events; the ETag is its quoted form"
    )


def page_schema(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The schema of a page: ``{count, next, previous, results}``."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(help_text="items in the whole list"),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item(many=True),
        },
    )


AccountPage = page_schema(AccountOutput, "AccountPage")

PAGE_PAST_THE_END = (
    " A page past the end is a 200 with no results, the true count, no next, and previous "
    "linking to the last page."
)


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


def metadata_of(request: Request, key: str | None) -> dict[str, Any]:
    """Who, why and which retry: the keywords every command service takes."""
    return {
        "actor": actor_of(request),
        "correlation_id": correlation_of(request),
        "idempotency_key": key,
    }


def account_response(state: svc.AccountState, status: int = 200) -> Response:
    response = Response(AccountOutput(state).data, status=status)
    response["ETag"] = etag_of(state.version)
    if state.position is not None:  # a command's answer: where its last event landed
        response[consistency.EVENT_POSITION] = str(state.position)
    return response


def with_event_position(response: Response, *accounts: str) -> Response:
    """Make sure a command's answer (200, 201) has ``X-Event-Position``, replayed too.

    A command's own answer has it from the services. An answer replayed for an
    Idempotency-Key is stored without headers: its position is read back from the
    accounts in its body (one indexed read, on this rare path only).

    Args:
        accounts: where the answer's body holds the accounts the command appended to
            (``""``: the body is the account; a list there: each of its accounts).
    """
    if response.status_code not in (200, 201) or consistency.EVENT_POSITION in response:
        return response
    body = response.data
    held: list[Any] = []
    for name in accounts:
        value = body[name] if name else body
        held.extend(value if isinstance(value, list) else [value])
    try:
        position = consistency.event_position(*held)
    except (DatabaseError, es.StoreUnavailableError):
        # The command has committed: an error now would invite a retry of a write that
        # happened. The answer goes out without the header (the client can read the
        # account, strongly consistent, instead of waiting for a read model).
        log.warning("the event position of a committed command could not be read", exc_info=True)
        return response
    response[consistency.EVENT_POSITION] = str(position)
    return response


def read_model_response(body: dict[str, Any], position: int) -> Response:
    """An answer from a read model, saying how far its projection had got."""
    response = Response(body)
    response[consistency.PROJECTION_POSITION] = str(position)
    return response


def not_modified(version: int) -> Response:
    """304: the client's copy is current; the ETag and the caching headers, no body."""
    response = Response(status=304)
    response["ETag"] = etag_of(version)
    return response


@extend_schema_field(OpenApiTypes.DATETIME)
class DateTimeText(serializers.CharField):
    """An RFC 3339 date-time, parsed by the view so that a missing time zone is an error."""


# --- accounts -------------------------------------------------------------------------


class AccountCollectionApi(ApiView):
    """GET: list accounts (balance read model). POST: open an account."""

    class ListQuery(PageQuery):
        status = AccountStatusField(required=False)
        search = TextField(
            required=False,
            max_length=HOLDER_NAME_MAX,
            allow_blank=True,
            help_text="part of the holder's name, any case",
        )

    @extend_schema_serializer(component_name="OpenAccount")
    class InputSerializer(StrictSerializer):
        holder_name = TextField(max_length=HOLDER_NAME_MAX)
        currency = CurrencyField(default="EUR")
        initial_balance_cents = StrictIntegerField(min_value=0, max_value=2**53 - 1, default=0)

    @extend_schema(
        operation_id="accounts_list",
        summary="List accounts",
        description="The accounts by holder name, from the balance read model (as far as the "
        "projections got: X-Projection-Position; send min_position to read your own "
        "writes)." + PAGE_PAST_THE_END,
        tags=[ACCOUNTS],
        parameters=[ListQuery, *READ_MODEL_PARAMETERS],
        responses={
            200: AccountPage,
            **problems(400, 401, 403, 429, 503, texts=READ_MODEL_PROBLEMS),
        },
    )
    def get(self, request: Request) -> Response:
        query = self.ListQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        wanted = consistency.requested_position(request)
        # Before the rows: they are then at least as new as the position announced.
        position = consistency.reached(consistency.BALANCES, wanted)
        accounts = selectors.account_list(
            status=query.validated_data.get("status"), search=query.validated_data.get("search")
        )

        def rows(offset: int, limit: int) -> Any:
            return AccountOutput(
                [
                    {
                        "id": a.account_id,
                        "holder_name": a.holder_name,
                        "currency": a.currency,
                        "balance_cents": a.balance_cents,
                        "status": a.status,
                        "version": a.version,
                    }
                    for a in accounts[offset : offset + limit]
                ],
                many=True,
            ).data

        return read_model_response(
            page_of(request, query.validated_data, count=accounts.count(), rows=rows), position
        )

    @extend_schema(
        operation_id="accounts_open",
        summary="Open an account",
        description="Opens an account and answers it (201, Location, ETag). If-Match and "
        "If-None-Match are refused here (400 precondition_not_supported): the new account "
        "has a new id, so there is no version to compare; send Idempotency-Key to retry "
        "safely.",
        tags=[ACCOUNTS],
        request=InputSerializer,
        parameters=[
            IDEMPOTENCY_KEY,
            X_CORRELATION_ID,
            ETAG,
            LOCATION,
            IDEMPOTENCY_REPLAYED,
            EVENT_POSITION_HEADER,
        ],
        responses={201: AccountOutput, **problems(400, 401, 403, 409, 415, 422, 429, 503)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        Preconditions.refused(
            request,
            "opening makes a new account, with a new id: there is no version to compare; "
            "send Idempotency-Key to make a retry safe",
        )
        key = read_key(request)
        metadata = metadata_of(request, key)  # before a replay, so that it is checked too

        def open_() -> Response:
            state = svc.open_account(
                holder_name=data.validated_data["holder_name"],
                currency=data.validated_data["currency"],
                initial_balance_cents=data.validated_data["initial_balance_cents"],
                **metadata,
            )
            return account_response(state, status=201)

        response = run_idempotent(request, key, open_)
        # Here, not in open_, so that a replayed answer carries them too.
        response["Location"] = f"/api/accounts/{response.data['id']}/"
        return with_event_position(response, "")


class AccountDetailApi(ApiView):
    """The account's state from its events (strongly consistent), now or at a past point."""

    class Query(serializers.Serializer):
        as_of_version = serializers.IntegerField(
            required=False, min_value=1, max_value=2**31, help_text="the state at this version"
        )
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
        summary="Read an account",
        description="The account's state from its events (strongly consistent), now or, with "
        "as_of_version or as_of, at a past point; the ETag is the version of the state "
        "answered. If-None-Match with that ETag answers 304 with no body.",
        tags=[ACCOUNTS],
        parameters=[Query, IF_NONE_MATCH_READ, IF_MATCH_READ, ETAG],
        responses={
            200: AccountOutput,
            304: OpenApiResponse(
                description="not modified: If-None-Match matched the ETag (no body)"
            ),
            **problems(400, 401, 403, 404, 412, 429, 503),
        },
    )
    def get(self, request: Request, account_id: uuid.UUID) -> Response:
        query = self.Query(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        preconditions = Preconditions.of(request)
        version = query.validated_data.get("as_of_version")
        moment = query.validated_data.get("as_of")
        if version is not None or moment is not None:
            state = selectors.account_at(account_id, version=version, at=moment)
        else:
            state = selectors.get_account(account_id)
        access_log.record(request, account_id, access_log.API_ACCOUNT)
        if preconditions.not_modified(account_id, state.version):
            return not_modified(state.version)
        return account_response(state)


# --- commands on one account ----------------------------------------------------------

COMMAND_PARAMETERS = [
    IF_MATCH_COMMAND,
    IF_NONE_MATCH_COMMAND,
    IDEMPOTENCY_KEY,
    X_CORRELATION_ID,
    ETAG,
    IDEMPOTENCY_REPLAYED,
    EVENT_POSITION_HEADER,
]
COMMAND_RESPONSES: dict[Any, Any] = {
    200: AccountOutput,
    **problems(400, 401, 403, 404, 409, 412, 415, 422, 429, 503),
}
# The commands that may need a second person's approval (withdraw, freeze, close).
MAKER_CHECKER_PARAMETERS = [*COMMAND_PARAMETERS, APPROVAL_LOCATION]
MAKER_CHECKER_RESPONSES: dict[Any, Any] = {
    200: AccountOutput,
    202: APPROVAL_ACCEPTED,
    **problems(400, 401, 403, 404, 409, 412, 415, 422, 429, 503, texts=MAKER_CHECKER_PROBLEMS),
}


class _AccountCommandApi(ApiView):
    """What the single-account commands share: If-Match, Idempotency-Key, the answer."""

    def command(
        self,
        request: Request,
        account_id: uuid.UUID,
        call: Callable[..., svc.AccountState],
        ask: ApprovalAsk | None = None,
    ) -> Response:
        """Run ``call(expected_version=..., **metadata)`` under the request's conditions,
        or, when ``ask`` needs a second person's approval, request it instead (202)."""
        preconditions = Preconditions.of(request)
        key = read_key(request)
        metadata = metadata_of(request, key)

        def run() -> Response:
            asked = None if ask is None else ask_approval_if_needed(ask, preconditions, metadata)
            if asked is not None:
                return asked
            return account_response(
                preconditions.run(
                    account_id, lambda expected: call(expected_version=expected, **metadata)
                )
            )

        response = run_idempotent(request, key, run)
        # A replayed answer: its headers read back.
        return with_approval_location(with_event_position(response, ""))


class _MoneyInput(StrictSerializer):
    amount_cents = AmountField()
    description = TextField(max_length=DESCRIPTION_MAX, allow_blank=True, default="")


class _ReasonInput(StrictSerializer):
    reason = TextField(max_length=REASON_MAX)


class AccountDepositApi(_AccountCommandApi):
    """Deposit money into the account."""

    @extend_schema_serializer(component_name="Deposit")
    class InputSerializer(_MoneyInput):
        pass

    @extend_schema(
        operation_id="accounts_deposit",
        summary="Deposit money",
        tags=[COMMANDS],
        request=InputSerializer,
        parameters=COMMAND_PARAMETERS,
        responses=COMMAND_RESPONSES,
    )
    def post(self, request: Request, account_id: uuid.UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self.command(
            request,
            account_id,
            lambda **kwargs: svc.deposit(
                account_id=account_id,
                amount_cents=data.validated_data["amount_cents"],
                description=data.validated_data["description"],
                **kwargs,
            ),
        )


class AccountWithdrawApi(_AccountCommandApi):
    """Withdraw money from the account."""

    @extend_schema_serializer(component_name="Withdraw")
    class InputSerializer(_MoneyInput):
        pass

    @extend_schema(
        operation_id="accounts_withdraw",
        summary="Withdraw money",
        description="Withdraws now (200), or, from the approval threshold of the account's "
        "currency on, asks for a second person's approval (202, nothing withdrawn yet; the "
        "description is the request's reason).",
        tags=[COMMANDS],
        request=InputSerializer,
        parameters=MAKER_CHECKER_PARAMETERS,
        responses=MAKER_CHECKER_RESPONSES,
    )
    def post(self, request: Request, account_id: uuid.UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        amount = data.validated_data["amount_cents"]
        description = data.validated_data["description"]
        return self.command(
            request,
            account_id,
            lambda **kwargs: svc.withdraw(
                account_id=account_id, amount_cents=amount, description=description, **kwargs
            ),
            ApprovalAsk(
                "withdraw",
                account_id,
                {
                    "account_id": str(account_id),
                    "amount_cents": amount,
                    "description": description,
                },
                reason=description,
                amount_cents=lambda: amount,
            ),
        )


class AccountFreezeApi(_AccountCommandApi):
    """Freeze the account: no movements."""

    @extend_schema_serializer(component_name="Freeze")
    class InputSerializer(_ReasonInput):
        pass

    @extend_schema(
        operation_id="accounts_freeze",
        summary="Freeze an account",
        description="Freezes now (200), or, when APPROVAL_ALWAYS names freeze (the default), "
        "asks for a second person's approval (202, nothing changed yet; the reason is the "
        "request's reason).",
        tags=[COMMANDS],
        request=InputSerializer,
        parameters=MAKER_CHECKER_PARAMETERS,
        responses=MAKER_CHECKER_RESPONSES,
    )
    def post(self, request: Request, account_id: uuid.UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reason = data.validated_data["reason"]
        return self.command(
            request,
            account_id,
            lambda **kwargs: svc.freeze(account_id=account_id, reason=reason, **kwargs),
            ApprovalAsk(
                "freeze", account_id, {"account_id": str(account_id), "reason": reason}, reason
            ),
        )


class AccountUnfreezeApi(_AccountCommandApi):
    """Unfreeze a frozen account."""

    @extend_schema_serializer(component_name="Unfreeze")
    class InputSerializer(_ReasonInput):
        pass

    @extend_schema(
        operation_id="accounts_unfreeze",
        summary="Unfreeze an account",
        tags=[COMMANDS],
        request=InputSerializer,
        parameters=COMMAND_PARAMETERS,
        responses=COMMAND_RESPONSES,
    )
    def post(self, request: Request, account_id: uuid.UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self.command(
            request,
            account_id,
            lambda **kwargs: svc.unfreeze(
                account_id=account_id, reason=data.validated_data["reason"], **kwargs
            ),
        )


class AccountCloseApi(_AccountCommandApi):
    """Close an account whose balance is 0."""

    @extend_schema_serializer(component_name="Close")
    class InputSerializer(_ReasonInput):
        pass

    @extend_schema(
        operation_id="accounts_close",
        summary="Close an account",
        description="Closes now (200), or, when APPROVAL_ALWAYS names close (the default), "
        "asks for a second person's approval (202, nothing changed yet; the reason is the "
        "request's reason). The balance must be 0 either way.",
        tags=[COMMANDS],
        request=InputSerializer,
        parameters=MAKER_CHECKER_PARAMETERS,
        responses=MAKER_CHECKER_RESPONSES,
    )
    def post(self, request: Request, account_id: uuid.UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reason = data.validated_data["reason"]
        return self.command(
            request,
            account_id,
            lambda **kwargs: svc.close(account_id=account_id, reason=reason, **kwargs),
            ApprovalAsk(
                "close", account_id, {"account_id": str(account_id), "reason": reason}, reason
            ),
        )


# --- transfers ------------------------------------------------------------------------


class TransferCreateApi(ApiView):
    """Move money between two accounts of one currency, atomically over both streams."""

    @extend_schema_serializer(component_name="Transfer")
    class InputSerializer(StrictSerializer):
        from_account = StrictUUIDField()
        to_account = StrictUUIDField()
        amount_cents = AmountField()
        description = TextField(max_length=DESCRIPTION_MAX, allow_blank=True, default="")

    @extend_schema_serializer(component_name="Transfer")
    class OutputSerializer(serializers.Serializer):
        transfer_id = serializers.UUIDField()
        from_account = AccountOutput()
        to_account = AccountOutput()

    @extend_schema(
        operation_id="transfers_create",
        summary="Transfer money",
        description="Moves money between two active accounts of one currency, both or "
        "neither (200), or, from the approval threshold of their currency on, asks for a "
        "second person's approval (202, nothing moved yet; the request's command holds the "
        "transfer_id the transfer will have; the description is its reason). If-Match and "
        "If-None-Match are refused here (400 precondition_not_supported): a transfer changes "
        "two accounts, and pinning one of them is not supported yet; send Idempotency-Key "
        "to retry safely.",
        tags=[TRANSFERS],
        request=InputSerializer,
        parameters=[
            IDEMPOTENCY_KEY,
            X_CORRELATION_ID,
            IDEMPOTENCY_REPLAYED,
            EVENT_POSITION_HEADER,
            APPROVAL_LOCATION,
        ],
        responses={
            200: OutputSerializer,
            202: APPROVAL_ACCEPTED,
            **problems(400, 401, 403, 404, 409, 415, 422, 429, 503, texts=MAKER_CHECKER_PROBLEMS),
        },
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        Preconditions.refused(
            request,
            "a transfer changes two accounts and cannot be pinned to a version of either; "
            "send Idempotency-Key to make a retry safe",
        )
        key = read_key(request)
        metadata = metadata_of(request, key)  # before a replay, so that it is checked too

        def transfer() -> Response:
            source, target = data.validated_data["from_account"], data.validated_data["to_account"]
            amount = data.validated_data["amount_cents"]
            description = data.validated_data["description"]
            asked = ask_approval_if_needed(
                ApprovalAsk(
                    "transfer",
                    source,
                    {
                        "from_account": str(source),
                        "to_account": str(target),
                        "amount_cents": amount,
                        "description": description,
                    },
                    reason=description,
                    amount_cents=lambda: amount,
                ),
                Preconditions(),  # refused above
                metadata,
            )
            if asked is not None:
                return asked
            result = svc.transfer(
                from_account=source,
                to_account=target,
                amount_cents=amount,
                description=description,
                **metadata,
            )
            response = Response(
                self.OutputSerializer(
                    {
                        "transfer_id": result.transfer_id,
                        "from_account": result.source,
                        "to_account": result.target,
                    }
                ).data
            )
            response[consistency.EVENT_POSITION] = str(result.position)
            return response

        # A replayed answer has no header of its own: it is read back then.
        return with_approval_location(
            with_event_position(
                run_idempotent(request, key, transfer), "from_account", "to_account"
            )
        )


# --- history --------------------------------------------------------------------------


PERSONAL_DATA_SHOWN = (
    "Personal fields (an AccountOpened's holder_name) are stored encrypted under the "
    "holder's own key; they are shown decrypted for the caller, and read [erased] once "
    "the holder's personal data was erased (a PersonalDataErased event records why), in "
    "every version of the account. Events written before encryption (AccountOpened "
    "schema_version 1) hold the name in clear and show what they hold."
)


class RevealedEventData(serializers.JSONField):
    """An event's payload as the caller reads it: personal fields decrypted, or ``[erased]``;
    never the stored token (the events table holds only that)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", **kwargs)

    def to_representation(self, value: Any) -> Any:
        return encryption.reveal_event_data(value.event_type, value.data)


@extend_schema_serializer(component_name="Event")
class EventOutput(serializers.Serializer):
    event_id = serializers.UUIDField()
    position = serializers.IntegerField()
    version = serializers.IntegerField()
    event_type = EventTypeField()
    schema_version = serializers.IntegerField()
    data = RevealedEventData(  # type: ignore[assignment]  # the event's field name
        help_text="the event's payload, as event_type says. " + PERSONAL_DATA_SHOWN
    )
    metadata = serializers.JSONField()
    occurred_at = serializers.DateTimeField()


class AccountEventsApi(ApiView):
    """The account's events in version order, paginated (straight from the event store)."""

    @extend_schema(
        operation_id="accounts_events",
        summary="List an account's events",
        description="The account's events in version order, straight from the event store."
        + PAGE_PAST_THE_END
        + " "
        + PERSONAL_DATA_SHOWN,
        tags=[HISTORY],
        parameters=[PageQuery],
        responses={
            200: page_schema(EventOutput, "EventPage"),
            **problems(400, 401, 403, 404, 429, 503),
        },
    )
    def get(self, request: Request, account_id: uuid.UUID) -> Response:
        query = PageQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        count = selectors.account_version(account_id)
        if count == 0:
            raise AccountNotFound(account_id)
        access_log.record(request, account_id, access_log.API_EVENTS)
        return Response(
            page_of(
                request,
                query.validated_data,
                count=count,
                rows=lambda offset, limit: (
                    EventOutput(
                        selectors.account_events(account_id, after_version=offset, limit=limit),
                        many=True,
                    ).data
                ),
            )
        )


@extend_schema_serializer(component_name="Transaction")
class TransactionOutput(serializers.Serializer):
    version = serializers.IntegerField()
    kind = TransactionKindField()
    amount_cents = serializers.IntegerField(
        help_text="the balance's change in minor units: negative for money out "
        "(withdrawal, transfer_out), so balance_after_cents is the previous row's plus it"
    )
    balance_after_cents = serializers.IntegerField()
    description = serializers.CharField()
    counterparty = serializers.UUIDField(allow_null=True)
    transfer_id = serializers.UUIDField(allow_null=True)
    actor = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    position = serializers.IntegerField()


class AccountTransactionsApi(ApiView):
    """The account's money movements (transaction-history read model), paginated."""

    @extend_schema(
        operation_id="accounts_transactions",
        summary="List an account's transactions",
        description="The account's money movements in version order, from the "
        "transaction-history read model (as far as the projections got: "
        "X-Projection-Position; send min_position to read your own writes)." + PAGE_PAST_THE_END,
        tags=[HISTORY],
        parameters=[PageQuery, *READ_MODEL_PARAMETERS],
        responses={
            200: page_schema(TransactionOutput, "TransactionPage"),
            **problems(400, 401, 403, 404, 429, 503, texts=READ_MODEL_PROBLEMS),
        },
    )
    def get(self, request: Request, account_id: uuid.UUID) -> Response:
        query = PageQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        wanted = consistency.requested_position(request)
        rows = selectors.transactions(account_id)  # lazy: read after the position below
        position = consistency.reached(consistency.TRANSACTIONS, wanted)
        access_log.record(request, account_id, access_log.API_TRANSACTIONS)
        return read_model_response(
            page_of(
                request,
                query.validated_data,
                count=rows.count(),
                rows=lambda offset, limit: (
                    TransactionOutput(rows[offset : offset + limit], many=True).data
                ),
            ),
            position,
        )
