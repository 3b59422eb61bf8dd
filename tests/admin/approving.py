"""What the maker-checker admin tests share: the rule switched on, the approvers group (a
transactional test's flush removes the groups its migrations made), and the queue's URLs."""

from __future__ import annotations

import importlib

from django.apps import apps

from tests.support import ensure_roles

QUEUE_URL = "/admin/bank/approvalrequest/"


def ensure_approvers() -> None:
    """The staff groups, the approvers included (idempotent)."""
    ensure_roles()
    importlib.import_module("bank.migrations.0005_approvers_role").create_role(apps, None)


def rule_on(settings, *, threshold_cents=100_000, ttl_hours=24):
    """Freeze and close always wait for an approval; money from ``threshold_cents`` on."""
    settings.APPROVAL_ALWAYS = "freeze,close"
    settings.APPROVAL_THRESHOLD_CENTS = threshold_cents
    settings.APPROVAL_THRESHOLDS = ""
    settings.APPROVAL_TTL_HOURS = ttl_hours
    return settings


def decide_url(approval_id) -> str:
    return f"{QUEUE_URL}{approval_id}/decide/"


def audit_url(account_id) -> str:
    return f"/admin/projections/accountbalance/{account_id}/audit/"


def reverse_url(account_id, version) -> str:
    return f"/admin/projections/accountbalance/{account_id}/reverse/{version}/"


def command_url(account_id, name) -> str:
    return f"/admin/projections/accountbalance/{account_id}/command/{name}/"
