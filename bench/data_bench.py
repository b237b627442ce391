"""Benchmark: bar data in (generate, CSV/Parquet load) and the built-in indicators over it.

``python -m bench.data_bench [bars]`` prints the results as JSON; ``bench/__main__.py`` may call
:func:`bench_data` (one dict per measurement). Every figure is the best of ``repeat`` runs, in
seconds, except ``*_us_per_bar`` (microseconds per incremental update, over 100,000 bars).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.datagen import ensure_dataset, write_dataset
from stratkernel.plugins import indicators as ind
from stratkernel.plugins.data_files import load_series
from stratkernel.plugins.synthetic import generate_bars

__all__ = ["bench_data"]

INCREMENTAL_BARS = 100_000


def _best(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_data(bars: int = 1_000_000, repeat: int = 3) -> list[dict[str, Any]]:
    """Measure data generation, loading and every built-in indicator over ``bars`` bars."""
    results: list[dict[str, Any]] = []

    def record(name: str, seconds: float, **extra: Any) -> None:
        results.append({"name": name, "bars": bars, "seconds": round(seconds, 4), **extra})

    record("synthetic.generate_bars", _best(lambda: generate_bars(bars), repeat))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bars.csv"
        record("datagen.write_csv", _best(lambda: write_dataset(bars, out), repeat))
        pq_out = Path(tmp) / "bars.parquet"
        write_dataset(bars, pq_out)
        record("data_files.load_parquet", _best(lambda: load_series(pq_out), repeat))
    csv_path = ensure_dataset(bars)
    record("data_files.load_csv", _best(lambda: load_series(csv_path), repeat), path=str(csv_path))

    series = load_series(csv_path)
    window = [series.bar(i) for i in range(min(INCREMENTAL_BARS, len(series)))]
    for spec in ind.SPECS:

        def compute(spec: Any = spec) -> None:
            spec.compute(series)

        vec = _best(compute, repeat)

        def feed(spec: Any = spec) -> None:
            inc = spec.incremental()
            update = inc.update
            for bar in window:
                update(bar)

        per_bar = _best(feed, repeat) / len(window) * 1e6
        record(f"indicator.{spec.name}", vec, incremental_us_per_bar=round(per_bar, 3))
    return results


def main(argv: list[str]) -> int:
    bars = int(argv[0]) if argv else 1_000_000
    print(json.dumps(bench_data(bars), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
