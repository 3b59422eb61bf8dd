from __future__ import annotations

from django.urls import path

from . import approvals, views

urlpatterns = [
    path("accounts/", views.AccountCollectionApi.as_view(), name="accounts"),
    path("accounts/<uuid:account_id>/", views.AccountDetailApi.as_view(), name="account"),
    path(
        "accounts/<uuid:account_id>/deposit/",
        views.AccountDepositApi.as_view(),
        name="account-deposit",
    ),
    path(
        "accounts/<uuid:account_id>/withdraw/",
        views.AccountWithdrawApi.as_view(),
        name="account-withdraw",
    ),
    path(
        "accounts/<uuid:account_id>/freeze/",
        views.AccountFreezeApi.as_view(),
        name="account-freeze",
    ),
    path(
        "accounts/<uuid:account_id>/unfreeze/",
        views.AccountUnfreezeApi.as_view(),
        name="account-unfreeze",
    ),
    path(
        "accounts/<uuid:account_id>/close/", views.AccountCloseApi.as_view(), name="account-close"
    ),
    path(
        "accounts/<uuid:account_id>/reversals/",
        approvals.AccountReversalApi.as_view(),
        name="account-reversals",
    ),
    path(
        "accounts/<uuid:account_id>/events/",
        views.AccountEventsApi.as_view(),
        name="account-events",
    ),
    path(
        "accounts/<uuid:account_id>/transactions/",
        views.AccountTransactionsApi.as_view(),
        name="account-transactions",
    ),
    path("transfers/", views.TransferCreateApi.as_view(), name="transfers"),
    path("approvals/", approvals.ApprovalCollectionApi.as_view(), name="approvals"),
    path(
        "approvals/<uuid:approval_id>/",
        approvals.ApprovalDetailApi.as_view(),
        name="approval",
    ),
    path(
        "approvals/<uuid:approval_id>/approve/",
        approvals.ApprovalApproveApi.as_view(),
        name="approval-approve",
    ),
    path(
        "approvals/<uuid:approval_id>/reject/",
        approvals.ApprovalRejectApi.as_view(),
        name="approval-reject",
    ),
]
