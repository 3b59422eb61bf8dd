"""Roles: tellers may command and query, auditors may only query, approvers may query and
decide maker-checker requests, superusers may do all (their own requests aside)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

VIEW_PERMISSION = "bank.view_accounts"
COMMAND_PERMISSION = "bank.issue_command"
DECIDE_PERMISSION = "bank.decide_approval"


class BankRolePermission(BasePermission):
    """Deny by default: queries need ``view_accounts``, commands ``issue_command``."""

    message = "your role may not do this"
    # What a command (a method other than GET, HEAD, OPTIONS) needs on this view.
    command_permission = COMMAND_PERMISSION

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False  # DRF answers 401 with the token challenge
        if not hasattr(view, request.method.lower()):
            return True  # a method the endpoint does not have: 405, whatever the role
        if request.method in SAFE_METHODS:
            return user.has_perm(VIEW_PERMISSION)
        return user.has_perm(self.command_permission)


class DecideApprovalPermission(BankRolePermission):
    """Approving or rejecting a request needs ``decide_approval`` (the approvers' group);
    tellers, who ask, and auditors, who look, may not. Whether this approver may decide
    this request (never their own) is the domain's rule: 403 ``self_approval``."""

    message = "only an approver (bank.decide_approval) may approve or reject a request"
    command_permission = DECIDE_PERMISSION
