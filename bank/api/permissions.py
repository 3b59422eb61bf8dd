"""Roles: tellers may command and query, auditors may only query, superusers may do all."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

VIEW_PERMISSION = "bank.view_accounts"
COMMAND_PERMISSION = "bank.issue_command"


class BankRolePermission(BasePermission):
    """Deny by default: queries need ``view_accounts``, commands ``issue_command``."""

    message = "your role may not do this"

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False  # DRF answers 401 with the token challenge
        if not hasattr(view, request.method.lower()):
            return True  # a method the endpoint does not have: 405, whatever the role
        if request.method in SAFE_METHODS:
            return user.has_perm(VIEW_PERMISSION)
        return user.has_perm(COMMAND_PERMISSION)
