"""Strict input fields: what a client sends is exactly what it means, or a 400."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from bank.domain import CURRENCIES, EVENT_TYPES, MAX_CENTS
from bank.domain.approval import KINDS as APPROVAL_KINDS
from bank.domain.approval import STATUSES as APPROVAL_STATUSES


class StrictIntegerField(serializers.IntegerField):
    """An integer that must be a JSON integer: no strings, no floats, no booleans."""

    default_error_messages = {"invalid": "must be a whole number (a JSON integer)"}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def AmountField(**kwargs: Any) -> StrictIntegerField:  # noqa: N802 - a field factory
    return StrictIntegerField(
        min_value=1,
        max_value=MAX_CENTS,
        help_text=f"integer minor units (cents), 1 to {MAX_CENTS} (2^53 - 1)",
        **kwargs,
    )


# Control characters (Unicode category Cc: C0, DEL, C1) and the bidirectional embedding,
# override and isolate controls (which can make a name read as another in the admin) are
# refused; the patterns put that in the OpenAPI document, and a non-blank text needs one
# character that is not a space.
_TEXT = r"[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
_SOLID = r"[^\s\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
NO_CONTROL_CHARACTERS = RegexValidator(
    rf"^{_TEXT}*$", message="must not contain control characters or bidirectional overrides"
)
NOT_BLANK = RegexValidator(
    rf"^{_TEXT}*{_SOLID}{_TEXT}*$",
    message="must not be blank or contain control characters or bidirectional overrides",
)


class TextField(serializers.CharField):
    """Text (a JSON string, nothing coerced) without NUL, lone surrogates or control characters."""

    default_error_messages = {"invalid": "must be a string"}

    def __init__(self, **kwargs: Any) -> None:
        # Validate what was sent, not a trimmed copy (a leading form feed is still one);
        # the domain trims surrounding spaces when it records the text.
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators.append(NOT_BLANK if not self.allow_blank else NO_CONTROL_CHARACTERS)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# A serializer for a JSON object body that refuses fields it does not know. (A comment, not a
# docstring: drf-spectacular would make a docstring the description of every request model
# that inherits it; each is described in its own words by bank.api.schema.REQUEST_BODIES.)
class StrictSerializer(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["expected a JSON object"]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


ACCOUNT_STATUSES = ("active", "frozen", "closed")


@extend_schema_field(
    {"type": "string", "enum": list(ACCOUNT_STATUSES), "description": "an account's status"},
    component_name="AccountStatus",
)
class AccountStatusField(serializers.ChoiceField):
    """``active``, ``frozen`` or ``closed`` (one ``AccountStatus`` enum in the schema)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=ACCOUNT_STATUSES, **kwargs)


@extend_schema_field(
    {"type": "string", "enum": sorted(CURRENCIES), "description": "an ISO 4217 currency code"},
    component_name="Currency",
)
class CurrencyField(serializers.ChoiceField):
    """An ISO 4217 currency code (one ``Currency`` enum in the schema)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "error_messages",
            {
                "invalid_choice": '"{input}" is not an ISO 4217 currency code; use one of: '
                + ", ".join(sorted(CURRENCIES))
            },
        )
        super().__init__(choices=sorted(CURRENCIES), **kwargs)


@extend_schema_field(
    {
        "type": "string",
        "enum": list(APPROVAL_STATUSES),
        "description": "pending until an approver approves (the command ran) or rejects it, "
        "or it expires (APPROVAL_TTL_HOURS)",
    },
    component_name="ApprovalStatus",
)
class ApprovalStatusField(serializers.ChoiceField):
    """A maker-checker request's status (one ``ApprovalStatus`` enum in the schema)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=APPROVAL_STATUSES, **kwargs)


class ApprovalKindField(serializers.ChoiceField):
    """The command a request holds: in answers one of ``ApprovalKind`` or a newer one; as a
    filter, one this version knows (else 400). See bank.api.schema."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=APPROVAL_KINDS, **kwargs)


class StrictUUIDField(serializers.UUIDField):
    """A UUID given as a JSON string. DRF's field also takes an integer (``UUID(int=…)``),
    so ``"to_account": 5`` named some account 00000000-…-0005 and answered 404; here it is a
    400 saying what is expected."""

    default_error_messages = {"invalid": "must be a UUID given as a string"}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# --- open lists of values: an enum in the schema, with room for newer values -------------

# The transaction history's kinds (projections.models.TransactionHistory.KINDS; a reversal
# since issue 21). Listed here, not imported: the document says what this API answers, and a
# test checks that the projection writes no kind missing from it.
TRANSACTION_KINDS = (
    "opening",
    "deposit",
    "withdrawal",
    "transfer_in",
    "transfer_out",
    "reversal",
)
# The account stream's event types (an approval's events are in a stream of their own).
ACCOUNT_EVENT_TYPES = tuple(sorted(EVENT_TYPES))


class TransactionKindField(serializers.CharField):
    """A transaction's ``kind``: one of ``TransactionKind`` or a newer one (bank.api.schema)."""


class EventTypeField(serializers.CharField):
    """An account event's ``event_type``: one of ``EventType`` or a newer one (bank.api.schema)."""
