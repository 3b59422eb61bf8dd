"""Who issues a command, and the ids that tie it to a request or to another command."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Actor:
    """The person or process behind a command, recorded in every event it causes.

    Attributes:
        username: the user's name at the time (kept even if the user is renamed later).
        user_id: the Django user id, or None for a system process.
        auth: how they authenticated: ``token``, ``session``, ``admin``, ``system``, ...
    """

    username: str
    user_id: int | None = None
    auth: str = "system"

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(username=name, user_id=None, auth="system")

    @classmethod
    def from_user(cls, user: Any, *, auth: str) -> Actor:
        return cls(username=user.get_username(), user_id=user.pk, auth=auth)

    def to_metadata(self) -> dict[str, Any]:
        return {"id": self.user_id, "username": self.username, "auth": self.auth}


class Metadata(TypedDict, total=False):
    """The keywords every command takes besides its own (``**metadata: Unpack[Metadata]``:
    written once, and a misspelled one is a type error and a ``TypeError``).

    Attributes:
        correlation_id: ties the command's events to a request (a new id by default).
        causation_id: the event or command that caused this one.
        idempotency_key: the client's key for a retried request.
        clock: when the events occurred (the system clock by default; tests pin it).
    """

    correlation_id: uuid.UUID | None
    causation_id: uuid.UUID | None
    idempotency_key: str | None
    clock: Clock


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandContext:
    """Metadata every command carries into its events."""

    actor: Actor
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    idempotency_key: str | None = None
    clock: Clock = system_clock
    approval: dict[str, Any] | None = None
    """For a command run on approval: the request's id and who approved it."""

    @classmethod
    def of(cls, actor: Actor, **metadata: Unpack[Metadata]) -> CommandContext:
        """The context of one command, built once.

        Raises:
            TypeError: ``actor`` is not an Actor (every command records who issued it), or
                an unknown keyword.
        """
        if not isinstance(actor, Actor):
            raise TypeError("actor must be an Actor: every command records who issued it")
        return cls(actor=actor, **metadata)

    def metadata(self, command: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "actor": self.actor.to_metadata(),
            "command": command,
            "correlation_id": str(self.correlation_id or uuid.uuid4()),
        }
        if self.causation_id is not None:
            data["causation_id"] = str(self.causation_id)
        if self.idempotency_key is not None:
            data["idempotency_key"] = self.idempotency_key
        if self.approval is not None:
            data["approval"] = self.approval
        return data
