"""The audit page's balance chart: inline SVG drawn on the server (no script, no CDN).

``{% balance_chart series currency holder marker %}`` renders
``admin/bank/accountbalance/balance_chart.html`` with the geometry computed here: the
balance as a step line (a balance holds until the next movement), a circle per point
(``.chart-point``), the axes labelled in currency units and the admin's time zone, and
the time-travel point (``.chart-marker``) when the page shows a past state. The SVG is
``role="img"`` named by its title and description; a visually hidden table beside it
lists the same points for screen readers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone

from bank.money_format import format_amount, format_money
from bank.selectors import BalanceSeries

register = template.Library()

WIDTH, HEIGHT = 760, 260
# Room for the labels: amounts on the left (up to "9,007,199,254,740.99"), dates below.
LEFT, RIGHT, TOP, BOTTOM = 118, 20, 28, 44
Y_TICKS, X_TICKS = 5, 5


@dataclass(frozen=True, slots=True)
class Marker:
    """The state the page travelled to: its version, when, and its balance."""

    version: int
    at: datetime
    balance_cents: int


@dataclass(frozen=True, slots=True)
class Tick:
    pos: str
    label: str
    anchor: str = "middle"  # SVG text-anchor: the end ticks stay inside the drawing


@dataclass(frozen=True, slots=True)
class Dot:
    x: str
    y: str
    version: int
    label: str  # "version 3, 2026-03-01 11:00:00: 13.00 EUR"
    when: str
    balance: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    path: str
    dots: list[Dot]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    marker: Dot | None
    title: str
    description: str
    spread_by_order: bool  # every movement at one instant: the x axis is their order


def _num(value: float) -> str:
    return f"{value:.1f}"


def _local(moment: datetime, with_time: bool) -> str:
    local = timezone.localtime(moment)
    return local.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")


# Below this span the axis's dates repeat: its labels carry the time too.
DATES_ONLY_FROM = 8 * 86400


def nice_step(span: int, target: int = Y_TICKS - 1) -> int:
    """A round step (1, 2 or 5 times a power of ten, in minor units) giving about
    ``target`` intervals over ``span``."""
    raw = max(1, -(-span // max(target, 1)))
    magnitude = 10 ** (len(str(raw)) - 1)
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * magnitude:
            return multiple * magnitude
    return 10 * magnitude  # pragma: no cover - 10 * magnitude always covers raw


def build_chart(
    series: BalanceSeries, currency: str, holder: str, marker: Marker | None = None
) -> Chart | None:
    """The chart's geometry, or None when there is nothing to draw."""
    points = series.points
    if not points and marker is None:
        return None
    balances = [p.balance_cents for p in points]
    times = [p.occurred_at for p in points]
    if marker is not None:
        balances.append(marker.balance_cents)
        times.append(marker.at)
    low, high = min(0, *balances), max(0, *balances)
    step = nice_step(high - low)
    y_min = math.floor(low / step) * step
    y_max = math.ceil(high / step) * step
    if y_max == y_min:
        y_max = y_min + step
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def y_of(cents: int) -> float:
        return TOP + plot_h * (y_max - cents) / (y_max - y_min)

    first, last = min(times), max(times)
    span = (last - first).total_seconds()
    spread = span <= 0 and len(points) > 1

    def x_of(moment: datetime, index: int) -> float:
        if spread:
            return LEFT + plot_w * index / (len(points) - 1)
        if span <= 0:
            return LEFT + plot_w / 2
        return LEFT + plot_w * (moment - first).total_seconds() / span

    with_time = span < DATES_ONLY_FROM
    dots = []
    for index, point in enumerate(points):
        when = _local(point.occurred_at, True)
        balance = format_money(point.balance_cents, currency)
        dots.append(
            Dot(
                x=_num(x_of(point.occurred_at, index)),
                y=_num(y_of(point.balance_cents)),
                version=point.version,
                label=f"version {point.version}, {when}: {balance}",
                when=when,
                balance=balance,
            )
        )
    path = ""
    if dots:
        path = f"M{dots[0].x},{dots[0].y}" + "".join(f"H{d.x}V{d.y}" for d in dots[1:])
    y_ticks = []
    value = y_min
    while value <= y_max:
        y_ticks.append(Tick(_num(y_of(value)), format_amount(value, currency)))
        value += step
    if spread:
        x_ticks = [Tick(_num(LEFT + plot_w / 2), _local(first, True) + " (all movements)")]
    elif span <= 0:
        x_ticks = [Tick(_num(LEFT + plot_w / 2), _local(first, True))]
    else:
        x_ticks = [
            Tick(
                _num(LEFT + plot_w * i / (X_TICKS - 1)),
                _local(first + (last - first) * i / (X_TICKS - 1), with_time),
                "start" if i == 0 else "end" if i == X_TICKS - 1 else "middle",
            )
            for i in range(X_TICKS)
        ]
    shown = None
    if marker is not None:
        # Where the travelled-to state sits: on its own movement's point when it is one,
        # otherwise at its time (a status change, or a moment between movements).
        same = next((d for d in dots if d.version == marker.version), None)
        when = _local(marker.at, True)
        balance = format_money(marker.balance_cents, currency)
        shown = Dot(
            x=same.x if same else _num(x_of(marker.at, 0)),
            y=_num(y_of(marker.balance_cents)),
            version=marker.version,
            label=f"the state shown above: version {marker.version}, {when}: {balance}",
            when=when,
            balance=balance,
        )
    title = f"Balance of {holder} over time, in {currency}"
    if points:
        lowest = min(p.balance_cents for p in points)
        highest = max(p.balance_cents for p in points)
        description = (
            f"{series.movements} balance change{'s' if series.movements != 1 else ''}"
            f"{f', drawn as {len(points)} points' if series.downsampled else ''}: "
            f"from {format_money(points[0].balance_cents, currency)} on "
            f"{_local(points[0].occurred_at, True)} to "
            f"{format_money(points[-1].balance_cents, currency)} on "
            f"{_local(points[-1].occurred_at, True)}; lowest "
            f"{format_money(lowest, currency)}, highest {format_money(highest, currency)}."
        )
    else:
        description = "No balance changes yet."
    if shown is not None:
        description += f" Marked: {shown.label}."
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=HEIGHT - BOTTOM,
        path=path,
        dots=dots,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        marker=shown,
        title=title,
        description=description,
        spread_by_order=spread,
    )


@register.inclusion_tag("admin/bank/accountbalance/balance_chart.html")
def balance_chart(
    series: BalanceSeries | None, currency: str, holder: str, marker: Marker | None = None
) -> dict[str, Any]:
    chart = build_chart(series, currency, holder, marker) if series is not None else None
    return {"chart": chart, "series": series, "currency": currency}
