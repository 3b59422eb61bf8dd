"""The maker-checker rule: which commands wait for a second person's approval.

Read from the settings (``APPROVAL_THRESHOLD_CENTS``, ``APPROVAL_THRESHOLDS``,
``APPROVAL_ALWAYS``, ``APPROVAL_TTL_HOURS``); parsed when the settings load, so a typo stops
the process at start instead of letting large sums through. Imports no Django model: the
settings module checks the configuration with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bank.domain.approval import KINDS
from bank.domain.money import CURRENCIES, MAX_CENTS

# The commands an amount threshold applies to; the others can only be "always".
AMOUNT_KINDS = ("withdraw", "transfer", "reversal")


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """Which commands need an approval.

    Attributes:
        threshold_cents: the amount (minor units) from which a withdrawal, transfer or
            reversal needs one, in any currency without a threshold of its own; None: none.
        thresholds: per currency, overriding ``threshold_cents``.
        always: the kinds that always need one (e.g. freeze, close).
        ttl: how long a request may wait for its decision.
    """

    threshold_cents: int | None
    thresholds: dict[str, int]
    always: frozenset[str]
    ttl: timedelta

    @classmethod
    def parse(
        cls, *, threshold_cents: int | None, thresholds: str, always: str, ttl_hours: int
    ) -> ApprovalPolicy:
        """Build the policy from the settings' values.

        Raises:
            ValueError: saying which value is wrong and what is expected.
        """
        if threshold_cents is not None and not 1 <= threshold_cents <= MAX_CENTS:
            raise ValueError(
                f"APPROVAL_THRESHOLD_CENTS={threshold_cents}: give an amount in minor units "
                f"from 1 to {MAX_CENTS}, or leave it unset"
            )
        per_currency: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in thresholds.split(","))):
            code, sep, amount = item.partition("=")
            code = code.strip()
            if not sep or code not in CURRENCIES or not amount.strip().isdigit():
                raise ValueError(
                    f"APPROVAL_THRESHOLDS: {item!r} is not CODE=AMOUNT with an ISO 4217 code "
                    "and an amount in minor units (e.g. EUR=1000000,JPY=100000)"
                )
            value = int(amount)
            if not 1 <= value <= MAX_CENTS:
                raise ValueError(
                    f"APPROVAL_THRESHOLDS: {code}={value} must be from 1 to {MAX_CENTS}"
                )
            if code in per_currency:
                raise ValueError(f"APPROVAL_THRESHOLDS: {code} is given twice")
            per_currency[code] = value
        kinds = frozenset(filter(None, (part.strip() for part in always.split(","))))
        unknown = sorted(kinds - set(KINDS))
        if unknown:
            raise ValueError(f"APPROVAL_ALWAYS: {', '.join(unknown)} not among {', '.join(KINDS)}")
        if ttl_hours < 1:
            raise ValueError(f"APPROVAL_TTL_HOURS={ttl_hours}: give at least 1 hour")
        return cls(threshold_cents, per_currency, kinds, timedelta(hours=ttl_hours))

    @classmethod
    def from_settings(cls) -> ApprovalPolicy:
        from django.conf import settings

        return cls.parse(
            threshold_cents=settings.APPROVAL_THRESHOLD_CENTS,
            thresholds=settings.APPROVAL_THRESHOLDS,
            always=settings.APPROVAL_ALWAYS,
            ttl_hours=settings.APPROVAL_TTL_HOURS,
        )

    def threshold_for(self, currency: str) -> int | None:
        """The amount from which a movement in ``currency`` needs an approval, or None."""
        return self.thresholds.get(currency, self.threshold_cents)

    def may_apply(self, kind: str) -> bool:
        """Whether a command of this kind can need an approval at all (no read needed
        to know it does not)."""
        if kind in self.always:
            return True
        return kind in AMOUNT_KINDS and (self.threshold_cents is not None or bool(self.thresholds))

    def requires(self, kind: str, *, currency: str = "", amount_cents: int | None = None) -> bool:
        """Whether this command needs an approval."""
        if kind in self.always:
            return True
        if kind not in AMOUNT_KINDS or amount_cents is None:
            return False
        threshold = self.threshold_for(currency)
        return threshold is not None and amount_cents >= threshold

    def describe(self) -> list[str]:
        """The rule in words, for the admin and the API."""
        lines = []
        if self.always:
            lines.append(
                "Always approved by a second person: "
                + ", ".join(k for k in KINDS if k in self.always)
                + "."
            )
        if self.threshold_cents is not None:
            lines.append(
                f"Withdrawals, transfers and reversals of {self.threshold_cents} minor units "
                "or more, in any currency without its own threshold."
            )
        for code, value in sorted(self.thresholds.items()):
            lines.append(
                f"In {code}: withdrawals, transfers and reversals of {value} minor units or more."
            )
        if not lines:
            lines.append("No command needs an approval (no threshold and no kind configured).")
        hours = int(self.ttl.total_seconds() // 3600)
        lines.append(
            f"A request expires {hours} hours after it is made; the requester can never "
            "approve their own, superusers included."
        )
        return lines
