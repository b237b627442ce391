from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest

from stratkernel.core.data import BarSeries, BarValidator
from stratkernel.core.errors import ValidationError
from stratkernel.core.model import Bar, OrderType, Quote, Side, order_request_from_untrusted, to_ms


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"open": math.nan}, "open"),
        ({"close": math.inf}, "close"),
        ({"low": -1.0}, "low"),
        ({"high": 9.0, "low": 10.5}, "high"),
        ({"open": 12.0}, "open"),
        ({"close": 8.0}, "close"),
        ({"volume": -5}, "volume"),
        ({"open": "abc"}, "open"),
        ({"open": True}, "open"),
    ],
)
def test_bar_parse_refuses_bad_values_naming_the_field(kwargs: dict, field: str) -> None:
    base = {"ts": 1_700_000_000_000, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 100.0}
    base.update(kwargs)
    with pytest.raises(ValidationError) as info:
        Bar.parse(**base)
    assert info.value.field == field
    assert field in str(info.value)


def test_naive_timestamp_refused() -> None:
    with pytest.raises(ValidationError, match="naive"):
        Bar.parse(datetime(2024, 1, 1), 1, 1, 1, 1)
    with pytest.raises(ValidationError, match="naive"):
        to_ms("2024-01-01T00:00:00")
    assert to_ms("2024-01-01T00:00:00Z") == 1_704_067_200_000
    assert to_ms(1_704_067_200) == 1_704_067_200_000  # seconds are recognised


def test_quote_validation() -> None:
    q = Quote.parse(1, "10.0", 10.2)
    assert q.mid == pytest.approx(10.1)
    with pytest.raises(ValidationError, match="ask"):
        Quote.parse(1, 10.0, 9.0)


def test_validator_refuses_out_of_order_and_counts() -> None:
    v = BarValidator()
    v.bar(Bar(2000, 1, 1, 1, 1, 0, "X"))
    with pytest.raises(ValidationError, match="out of order"):
        v.bar(Bar(2000, 1, 1, 1, 1, 0, "X"))
    with pytest.raises(ValidationError):
        v.bar(Bar(3000, 1, 0.5, 1, 1, 0, "X"))  # high < low
    v.bar(Bar(1000, 1, 1, 1, 1, 0, "Y"))  # ordering is per symbol
    assert v.refused == 2


def test_series_validation_names_the_first_bad_row() -> None:
    ts = np.arange(5, dtype=np.int64) * 60_000
    o = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    h = o + 0.5
    lo = o - 0.5
    c = o.copy()
    c[3] = 2.0  # above high
    with pytest.raises(ValidationError) as info:
        BarSeries.from_arrays("S", ts, o, h, lo, c)
    assert info.value.field == "bar[3].close"
    ts2 = ts.copy()
    ts2[4] = ts2[2]
    with pytest.raises(ValidationError, match="strictly increase"):
        BarSeries.from_arrays("S", ts2, o, h, lo, o)
    bad = o.copy()
    bad[1] = np.nan
    with pytest.raises(ValidationError, match=r"bar\[1\]\.open"):
        BarSeries.from_arrays("S", ts, bad, h, lo, o)


class SneakyFloat(float):
    def __eq__(self, other: object) -> bool:  # behaviour that would run inside the kernel
        return True

    __hash__ = float.__hash__


class SneakyStr(str):
    pass


def test_untrusted_order_requires_exact_types() -> None:
    ok = order_request_from_untrusted(
        {"side": "buy", "qty": 2, "stop_loss": 9.5}, strategy="s", source="script", default_symbol="X"
    )
    assert ok.side is Side.BUY and ok.qty == 2.0 and ok.type is OrderType.MARKET and ok.symbol == "X"
    for raw, field in [
        ({"side": "buy", "qty": SneakyFloat(1.0)}, "qty"),
        ({"side": SneakyStr("buy"), "qty": 1.0}, "side"),
        ({"side": "buy", "qty": math.nan}, "qty"),
        ({"side": "buy", "qty": -1.0}, "qty"),
        ({"side": "buy", "qty": True}, "qty"),
        ({"side": "hold", "qty": 1.0}, "side"),
        ({"side": "buy", "qty": 1.0, "type": "limit"}, "limit_price"),
        ({"side": "buy", "qty": 1.0, "__class__": 1}, "order"),
        ({"side": "buy", "qty": 1.0, "symbol": "x" * 500}, "symbol"),
    ]:
        with pytest.raises(ValidationError) as info:
            order_request_from_untrusted(raw, strategy="s", source="script", default_symbol="X")
        assert info.value.field == field, raw
    with pytest.raises(ValidationError):
        order_request_from_untrusted(["buy", 1], strategy="s", source="script")
