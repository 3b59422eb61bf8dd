"""Progress for long management commands, on a terminal and off it.

On a terminal: tqdm's bar. Anywhere else (a log file, a pipe, a container's log, CI): a
plain line every ``interval`` seconds and one at the end, because tqdm disables itself
there and an operator would see nothing for minutes.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Protocol

from tqdm import tqdm


class Stream(Protocol):
    """Where progress goes: a text stream, or a management command's ``OutputWrapper``."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> None: ...

    def isatty(self) -> bool: ...


class LineProgress:
    """``update(n)`` as tqdm's, writing ``<desc>: <done> / <total> <unit> (<pct>), <rate>/s``
    at most every ``interval`` seconds, and once at the end."""

    def __init__(
        self, *, total: int | None, desc: str, unit: str, file: Stream, interval: float
    ) -> None:
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.interval = interval
        self.n = 0
        self._started = self._written = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._written >= self.interval:
            self._write(now)

    def _write(self, now: float) -> None:
        self._written = now
        rate = self.n / max(now - self._started, 1e-9)
        of = f" / {self.total:,}" if self.total else ""
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        self.file.write(
            f"{self.desc}: {self.n:,}{of} {self.unit}{share}, {rate:,.0f} {self.unit}/s\n"
        )
        self.file.flush()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._write(time.monotonic())


def progress(
    *,
    total: int | None,
    desc: str,
    file: Stream,
    verbosity: int,
    unit: str = "ev",
    initial: int = 0,
    interval: float = 5.0,
) -> Any:
    """A progress reporter for a command: tqdm on a terminal, ``LineProgress`` elsewhere,
    nothing at verbosity 0. Use as a context manager; call ``update(n)``."""
    if verbosity < 1:
        return tqdm(total=total, disable=True)
    if file.isatty():
        return tqdm(total=total, initial=initial, unit=unit, desc=desc, file=file)
    line = LineProgress(total=total, desc=desc, unit=unit, file=file, interval=interval)
    line.n = initial
    return line
