"""The admin's forms: teller commands (amounts typed in currency units) and time travel."""

from __future__ import annotations

from typing import Any

from django import forms

from bank.domain.currency_units import minor_units
from bank.domain.text import DESCRIPTION_MAX, REASON_MAX
from bank.money_format import (
    MAX_AMOUNT_LENGTH,
    AmountError,
    amount_example,
    parse_amount,
    precision_phrase,
)


class AmountField(forms.Field):
    """An amount typed in the account's currency units ("12.50"), cleaned to integer minor
    units (1250) exactly; the label names the currency ("Amount (EUR)")."""

    def __init__(self, *, currency: str, **kwargs: Any) -> None:
        self.currency = currency
        kwargs.setdefault("label", f"Amount ({currency})")
        kwargs.setdefault("help_text", f"in {currency}, {precision_phrase(currency)}")
        kwargs.setdefault(
            "widget",
            forms.TextInput(
                attrs={
                    "inputmode": "decimal" if minor_units(currency) else "numeric",
                    "placeholder": amount_example(currency),
                    "autocomplete": "off",
                    "maxlength": MAX_AMOUNT_LENGTH,
                    "class": "money-input",
                }
            ),
        )
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> int | None:
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        try:
            return parse_amount(text, self.currency)
        except AmountError as exc:
            raise forms.ValidationError(str(exc), code="invalid_amount") from None


class MoneyForm(forms.Form):
    """A deposit or a withdrawal: ``amount`` cleans to integer minor units.

    ``noun`` ("Deposit", "Withdrawal") begins the labels, so that the audit page's two money
    forms have fields of different names ("Deposit amount (EUR)", "Withdrawal amount (EUR)")
    for those who hear a field's name without its form's legend.
    """

    def __init__(self, *args: Any, currency: str, noun: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        amount = f"{noun} amount" if noun else "Amount"
        description = f"{noun} description" if noun else "Description"
        self.fields["amount"] = AmountField(currency=currency, label=f"{amount} ({currency})")
        self.fields["description"] = forms.CharField(
            max_length=DESCRIPTION_MAX, required=False, label=f"{description} (optional)"
        )


class ReasonForm(forms.Form):
    """Freeze, unfreeze or close: a reason is required (it is recorded in the event)."""

    def __init__(self, *args: Any, label: str = "Reason", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"] = forms.CharField(max_length=REASON_MAX, label=label)


class TimeTravelForm(forms.Form):
    as_of_version = forms.IntegerField(min_value=1, required=False, label="Version")
    as_of = forms.DateTimeField(
        required=False,
        label="Date and time",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1}),
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("as_of_version") and data.get("as_of"):
            raise forms.ValidationError("Pick a version or a date and time, not both.")
        return data


class ApproveForm(forms.Form):
    """Approving a maker-checker request: an optional note, recorded with the approval."""

    note = forms.CharField(
        max_length=REASON_MAX,
        required=False,
        label="Note (optional)",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


class RejectForm(forms.Form):
    """Rejecting a maker-checker request: the reason is required (the requester reads it)."""

    reason = forms.CharField(
        max_length=REASON_MAX,
        label="Reason for rejecting",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
