"""Sessions and calendars on known dates: US holidays, early closes, DST weeks, FX weekends, crypto."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from stratkernel.core.data import BarSeries
from stratkernel.core.errors import ConfigError, ValidationError
from stratkernel.core.sessions import CALENDARS, calendar_for, is_open, resample, session_bounds, sessions

NY = ZoneInfo("America/New_York")
MIN = 60_000
HOUR = 3_600_000


def ny(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=NY).timestamp() * 1000)


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text + "+00:00").timestamp() * 1000)


def minutes(symbol: str, start_ms: int, end_ms: int) -> BarSeries:
    """1-minute bars from start to end (exclusive); bar i has close = i + 1, volume = 1."""
    ts = np.arange(start_ms, end_ms, MIN, dtype=np.int64)
    c = np.arange(1, len(ts) + 1, dtype=np.float64)
    return BarSeries.from_arrays(symbol, ts, c, c + 0.5, c - 0.5, c, np.ones(len(ts)))


def test_us_holiday_is_closed_and_the_days_around_it_open() -> None:
    assert not is_open("XNYS", ny(2024, 7, 4, 11))  # Independence Day (Thursday)
    assert is_open("XNYS", ny(2024, 7, 5, 9, 30))  # open is inclusive
    assert not is_open("XNYS", ny(2024, 7, 5, 9, 29))
    assert is_open("XNYS", ny(2024, 7, 5, 15, 59)) and not is_open("XNYS", ny(2024, 7, 5, 16, 0))
    assert not is_open("XNYS", ny(2025, 1, 9, 12))  # day of mourning (Carter)
    assert not is_open("XNYS", ny(2026, 4, 3, 12))  # Good Friday 2026
    assert not is_open("XNYS", ny(2027, 12, 24, 12))  # Christmas observed on Friday
    assert not is_open("XNYS", ny(2024, 7, 6, 12))  # Saturday
    assert session_bounds("XNYS", [date(2024, 11, 28), date(2024, 11, 27)]) == [
        None,
        (ny(2024, 11, 27, 9, 30), ny(2024, 11, 27, 16)),
    ]


def test_early_close_day() -> None:
    assert is_open("XNYS", ny(2024, 7, 3, 12, 59))
    assert not is_open("XNYS", ny(2024, 7, 3, 13, 0))
    (s,) = sessions("XNYS", ny(2024, 11, 29, 0), ny(2024, 11, 29, 23))
    assert s == (ny(2024, 11, 29, 9, 30), ny(2024, 11, 29, 13, 0))


def test_dst_change_week_moves_the_open_in_utc() -> None:
    # US clocks moved forward on Sunday 2024-03-10: Friday opens 14:30 UTC, Monday 13:30 UTC
    fri, mon = session_bounds("XNYS", [date(2024, 3, 8), date(2024, 3, 11)])
    assert fri == (utc("2024-03-08T14:30:00"), utc("2024-03-08T21:00:00"))
    assert mon == (utc("2024-03-11T13:30:00"), utc("2024-03-11T20:00:00"))
    # hourly bars from minute data across that weekend follow the local open
    bars = resample(minutes("SPY", utc("2024-03-08T00:00:00"), utc("2024-03-12T00:00:00")), HOUR, "XNYS")
    opens = [
        int(t) for t in bars.ts if datetime.fromtimestamp(int(t) / 1000, tz=NY).strftime("%H:%M") == "09:30"
    ]
    assert opens == [utc("2024-03-08T14:30:00"), utc("2024-03-11T13:30:00")]
    assert len(bars) == 14  # 7 bars a day (09:30 ... 15:30), nothing on the weekend


def test_resample_aligns_to_open_and_cuts_the_last_bar_at_the_close() -> None:
    src = minutes("SPY", ny(2024, 7, 5, 4, 0), ny(2024, 7, 5, 20, 0))  # pre- and post-market included
    bars = resample(src, HOUR, "XNYS")
    local = [datetime.fromtimestamp(int(t) / 1000, tz=NY).strftime("%H:%M") for t in bars.ts]
    assert local == ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]
    assert list(bars.volume) == [60.0] * 6 + [30.0]  # the last bar is half an hour: cut at 16:00
    first = int(np.searchsorted(src.ts, ny(2024, 7, 5, 9, 30)))
    assert bars.open[0] == src.open[first] and bars.close[0] == src.close[first + 59]
    assert bars.high[0] == src.high[first + 59] and bars.low[0] == src.low[first]
    last_in_session = int(np.searchsorted(src.ts, ny(2024, 7, 5, 16, 0))) - 1
    assert bars.close[-1] == src.close[last_in_session]


def test_resample_on_an_early_close_day_and_daily_bars() -> None:
    src = minutes("SPY", ny(2024, 11, 27, 0), ny(2024, 12, 3, 0))  # Wed, Thanksgiving, half Friday, Mon
    hourly = resample(src, HOUR, "XNYS")
    fri = [
        (datetime.fromtimestamp(int(t) / 1000, tz=NY).strftime("%H:%M"), v)
        for t, v in zip(hourly.ts, hourly.volume, strict=True)
        if datetime.fromtimestamp(int(t) / 1000, tz=NY).date() == date(2024, 11, 29)
    ]
    assert fri == [("09:30", 60.0), ("10:30", 60.0), ("11:30", 60.0), ("12:30", 30.0)]
    daily = resample(src, 86_400_000, "XNYS")
    assert [datetime.fromtimestamp(int(t) / 1000, tz=NY).date() for t in daily.ts] == [
        date(2024, 11, 27),
        date(2024, 11, 29),
        date(2024, 12, 2),
    ]
    assert list(daily.volume) == [390.0, 210.0, 390.0]


def test_fx_is_open_from_sunday_to_friday_five_pm_new_york() -> None:
    assert not is_open("FX", ny(2024, 6, 8, 12))  # Saturday
    assert not is_open("FX", ny(2024, 6, 9, 16, 59))  # Sunday before the open
    assert is_open("FX", ny(2024, 6, 9, 17, 0))
    assert is_open("FX", ny(2024, 6, 12, 3, 0))  # Wednesday night
    assert is_open("FX", ny(2024, 6, 14, 16, 59)) and not is_open("FX", ny(2024, 6, 14, 17, 0))
    # the week after US clocks went back (2024-11-03): the Sunday open is 22:00 UTC, not 21:00
    (s,) = sessions("FX", utc("2024-11-04T00:00:00"), utc("2024-11-04T01:00:00"))
    assert s == (utc("2024-11-03T22:00:00"), utc("2024-11-08T22:00:00"))
    daily = resample(
        minutes("EURUSD", utc("2024-11-02T00:00:00"), utc("2024-11-09T00:00:00")), 86_400_000, "FX"
    )
    assert [int(t) for t in daily.ts] == [utc("2024-11-03T22:00:00") + k * 86_400_000 for k in range(5)]
    assert list(daily.volume) == [1440.0] * 5


def test_crypto_never_closes_and_days_start_at_midnight_utc() -> None:
    assert is_open("CRYPTO", utc("2024-12-25T03:00:00")) and is_open("CRYPTO", utc("2024-07-06T12:00:00"))
    src = minutes("BTC/USDT", utc("2024-03-09T18:00:00"), utc("2024-03-11T06:00:00"))
    daily = resample(src, 86_400_000, "CRYPTO")
    assert [int(t) for t in daily.ts] == [
        utc("2024-03-09T00:00:00"),
        utc("2024-03-10T00:00:00"),
        utc("2024-03-11T00:00:00"),
    ]
    assert list(daily.volume) == [360.0, 1440.0, 360.0]


def test_refusals_name_the_problem() -> None:
    with pytest.raises(ValidationError, match="2024-2027 only"):
        is_open("XNYS", ny(2023, 12, 29, 12))
    with pytest.raises(ConfigError, match="unknown calendar 'LSE'"):
        is_open("LSE", 0)
    with pytest.raises(ValidationError, match="interval_ms"):
        resample(minutes("X", 0, 10 * MIN), 0, "CRYPTO")
    with pytest.raises(ConfigError, match=r"sessions\.AAPL"):
        calendar_for("AAPL")
    assert calendar_for("AAPL", {"AAPL": "XNYS"}) is CALENDARS["XNYS"]
    assert calendar_for("BTC/USDT", {"AAPL": "XNYS"}, default="CRYPTO") is CALENDARS["CRYPTO"]


def test_fx_bars_before_the_weekend_belong_to_the_closing_session() -> None:
    # Friday 2024-11-01 00:00-21:00 UTC trades in the session that opened Sunday 2024-10-27 (EDT)
    daily = resample(
        minutes("EURUSD", utc("2024-11-01T00:00:00"), utc("2024-11-02T00:00:00")), 86_400_000, "FX"
    )
    assert [int(t) for t in daily.ts] == [utc("2024-10-31T21:00:00")]
    assert list(daily.volume) == [21 * 60.0]  # cut at the Friday 17:00 EDT close; the weekend is dropped
