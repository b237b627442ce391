"""Trading sessions and calendars: when a market is open, and bars aligned to its sessions.

A :class:`Calendar` knows a market's timezone (``zoneinfo``), its regular hours, its holidays and early
closes. Three ship with stratkernel (see :data:`CALENDARS`):

* ``XNYS`` (NYSE): 09:30-16:00 America/New_York, Monday to Friday, with the exchange's holidays and
  13:00 early closes for **2024-2027 only**. Asking about another year is refused (a wrong answer
  about a holiday is worse than none); add years by building a ``Calendar`` with more dates.
* ``FX``: one session a week, Sunday 17:00 to Friday 17:00 America/New_York (no holidays modelled).
* ``CRYPTO``: always open; its "sessions" are UTC days, so daily bars start at 00:00 UTC.

Which calendar a symbol trades on is configuration, not guesswork: :func:`calendar_for` takes an
explicit ``{symbol: calendar name}`` mapping and a default.

:func:`resample` turns fine bars into coarser ones the way a venue's charts do: buckets start at the
session open (09:30, 10:30, ... for hourly NYSE bars), the last bucket of a session is cut at the
close (the 15:30 bar covers 30 minutes), and bars outside any session are dropped. All arithmetic is
on UTC epoch milliseconds computed from local wall-clock times, so DST changes land where they should.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np

from .data import BarSeries
from .errors import ConfigError, ValidationError

__all__ = ["CALENDARS", "Calendar", "calendar_for", "is_open", "resample", "sessions"]

MS_PER_DAY = 86_400_000
Kind = Literal["always", "daily", "weekly"]


def _d(*isos: str) -> frozenset[date]:
    return frozenset(date.fromisoformat(s) for s in isos)


# NYSE full-day closures, 2024-2027 (from the exchange's published holiday calendar). 2025-01-09 is
# the national day of mourning for President Carter. Saturday holidays are observed on the Friday
# before, Sunday ones on the Monday after.
XNYS_HOLIDAYS = _d(
    "2024-01-01", "2024-01-15", "2024-02-19", "2024-03-29", "2024-05-27", "2024-06-19", "2024-07-04",
    "2024-09-02", "2024-11-28", "2024-12-25",
    "2025-01-01", "2025-01-09", "2025-01-20", "2025-02-17", "2025-04-18", "2025-05-26", "2025-06-19",
    "2025-07-04", "2025-09-01", "2025-11-27", "2025-12-25",
    "2026-01-01", "2026-01-19", "2026-02-16", "2026-04-03", "2026-05-25", "2026-06-19", "2026-07-03",
    "2026-09-07", "2026-11-26", "2026-12-25",
    "2027-01-01", "2027-01-18", "2027-02-15", "2027-03-26", "2027-05-31", "2027-06-18", "2027-07-05",
    "2027-09-06", "2027-11-25", "2027-12-24",
)  # fmt: skip
# 13:00 early closes (day before Independence Day, day after Thanksgiving, Christmas Eve)
XNYS_EARLY_CLOSES = {
    d: time(13, 0)
    for d in _d(
        "2024-07-03",
        "2024-11-29",
        "2024-12-24",
        "2025-07-03",
        "2025-11-28",
        "2025-12-24",
        "2026-11-27",
        "2026-12-24",
        "2027-11-26",
    )
}


@dataclass(frozen=True)
class Calendar:
    """A market's sessions.

    ``kind``: ``always`` (never closes; sessions are UTC days), ``daily`` (``open``-``close`` local time
    on ``weekdays``, minus ``holidays``, with ``early_closes``), or ``weekly`` (one session from
    ``open`` on weekday ``week_open_day`` to ``close`` on ``week_close_day``). Weekdays: Monday = 0.
    ``years``: the years the holiday list covers; outside them this calendar refuses to answer.
    """

    name: str
    tz: ZoneInfo
    kind: Kind
    open: time = time(0, 0)
    close: time = time(0, 0)
    weekdays: frozenset[int] = frozenset(range(5))
    holidays: frozenset[date] = frozenset()
    early_closes: Mapping[date, time] = field(default_factory=dict)
    week_open_day: int = 6
    week_close_day: int = 4
    years: tuple[int, int] | None = None

    def _check_year(self, d: date) -> None:
        if self.years is not None and not self.years[0] <= d.year <= self.years[1]:
            raise ValidationError(
                "ts", d.isoformat(),
                f"the {self.name} calendar knows holidays for {self.years[0]}-{self.years[1]} only",
            )  # fmt: skip

    def _at(self, d: date, t: time) -> int:
        return int(datetime.combine(d, t, tzinfo=self.tz).timestamp() * 1000)

    def sessions(self, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        """Sessions ``[open_ms, close_ms)`` that overlap ``[start_ms, end_ms]``, in order."""
        if end_ms < start_ms:
            raise ValidationError("end_ms", end_ms, f"is before start_ms ({start_ms})")
        if self.kind == "always":
            first = start_ms // MS_PER_DAY
            return [(k * MS_PER_DAY, (k + 1) * MS_PER_DAY) for k in range(first, end_ms // MS_PER_DAY + 1)]
        lo = datetime.fromtimestamp(start_ms / 1000, tz=self.tz).date()
        hi = datetime.fromtimestamp(end_ms / 1000, tz=self.tz).date()
        self._check_year(lo)
        self._check_year(hi)
        out: list[tuple[int, int]] = []
        # a weekly session that overlaps the range may have opened up to a week before it
        d = lo - timedelta(days=7 if self.kind == "weekly" else 1)
        while d <= hi:
            if self.kind == "daily":
                known = self.years is None or self.years[0] <= d.year <= self.years[1]
                if known and d.weekday() in self.weekdays and d not in self.holidays:
                    o, c = self._at(d, self.open), self._at(d, self.early_closes.get(d, self.close))
                    if c > start_ms and o <= end_ms:
                        out.append((o, c))
            elif d.weekday() == self.week_open_day:
                days = (self.week_close_day - self.week_open_day) % 7
                o, c = self._at(d, self.open), self._at(d + timedelta(days=days), self.close)
                if c > start_ms and o <= end_ms:
                    out.append((o, c))
            d += timedelta(days=1)
        return out

    def is_open(self, ts_ms: int) -> bool:
        """Whether the market is open at ``ts_ms`` (open inclusive, close exclusive)."""
        return any(o <= ts_ms < c for o, c in self.sessions(ts_ms, ts_ms))


CALENDARS: dict[str, Calendar] = {
    "XNYS": Calendar("XNYS", ZoneInfo("America/New_York"), "daily", time(9, 30), time(16, 0),
                     holidays=XNYS_HOLIDAYS, early_closes=XNYS_EARLY_CLOSES, years=(2024, 2027)),
    "FX": Calendar("FX", ZoneInfo("America/New_York"), "weekly", time(17, 0), time(17, 0),
                   week_open_day=6, week_close_day=4),
    "CRYPTO": Calendar("CRYPTO", ZoneInfo("UTC"), "always"),
}  # fmt: skip


def _calendar(calendar: Calendar | str) -> Calendar:
    if isinstance(calendar, Calendar):
        return calendar
    cal = CALENDARS.get(calendar)
    if cal is None:
        raise ConfigError("calendar", f"unknown calendar {calendar!r}; known: {', '.join(sorted(CALENDARS))}")
    return cal


def calendar_for(
    symbol: str, mapping: Mapping[str, str] | None = None, default: str | None = None
) -> Calendar:
    """The calendar ``symbol`` trades on: ``mapping[symbol]``, else ``default``; refused if neither."""
    name = (mapping or {}).get(symbol, default)
    if name is None:
        raise ConfigError(f"sessions.{symbol}", "no calendar for this symbol; map it to one of "
                          f"{', '.join(sorted(CALENDARS))}")  # fmt: skip
    return _calendar(name)


def sessions(calendar: Calendar | str, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    return _calendar(calendar).sessions(start_ms, end_ms)


def is_open(calendar: Calendar | str, ts_ms: int) -> bool:
    """Whether ``calendar``'s market is open at ``ts_ms``."""
    return _calendar(calendar).is_open(ts_ms)


def resample(series: BarSeries, interval_ms: int, calendar: Calendar | str) -> BarSeries:
    """Aggregate ``series`` (bars stamped with their open time) into ``interval_ms`` bars aligned to
    each session's open; the last bar of a session is cut at its close; bars outside sessions are
    dropped. ``open`` = first open, ``high``/``low`` = extremes, ``close`` = last close, volume summed."""
    if type(interval_ms) is not int or interval_ms <= 0:
        raise ValidationError("interval_ms", interval_ms, "must be a positive integer (milliseconds)")
    cal = _calendar(calendar)
    n = len(series)
    if n == 0:
        return series
    sess = cal.sessions(int(series.ts[0]), int(series.ts[-1]))
    if not sess:
        return series.slice(0, 0)
    opens = np.fromiter((s[0] for s in sess), dtype=np.int64, count=len(sess))
    closes = np.fromiter((s[1] for s in sess), dtype=np.int64, count=len(sess))
    ts = series.ts
    k = np.searchsorted(opens, ts, side="right") - 1
    inside = k >= 0
    inside[inside] &= ts[inside] < closes[k[inside]]
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return series.slice(0, 0)
    t, o_k = ts[idx], opens[k[idx]]
    bucket = o_k + (t - o_k) // interval_ms * interval_ms
    starts = np.concatenate(([0], np.flatnonzero(np.diff(bucket)) + 1))
    ends = np.concatenate((starts[1:], [idx.size])) - 1
    return BarSeries.from_arrays(
        series.symbol,
        bucket[starts],
        series.open[idx][starts],
        np.maximum.reduceat(series.high[idx], starts),
        np.minimum.reduceat(series.low[idx], starts),
        series.close[idx][ends],
        np.add.reduceat(series.volume[idx], starts),
    )


def session_bounds(calendar: Calendar | str, days: Iterable[date]) -> list[tuple[int, int] | None]:
    """The ``(open_ms, close_ms)`` of a daily calendar's session on each local date (None: closed)."""
    cal = _calendar(calendar)
    out: list[tuple[int, int] | None] = []
    for d in days:
        noon = int(datetime.combine(d, time(12, 0), tzinfo=cal.tz).astimezone(UTC).timestamp() * 1000)
        found = [s for s in cal.sessions(noon - MS_PER_DAY // 2, noon + MS_PER_DAY // 2 - 1)
                 if datetime.fromtimestamp(s[0] / 1000, tz=cal.tz).date() == d]  # fmt: skip
        out.append(found[0] if found else None)
    return out
