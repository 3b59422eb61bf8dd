"""The service layer: the one entry point for commands and queries on accounts."""

from __future__ import annotations

from .context import Actor, CommandContext, system_clock

__all__ = ["Actor", "CommandContext", "system_clock"]
