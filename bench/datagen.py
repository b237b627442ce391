"""Reproducible synthetic OHLCV files for the benchmarks.

::

    python -m bench.datagen --bars 1000000 --out bench/data/bars_1m.csv [--seed 1]

writes a CSV (or ``.parquet``) with columns ``ts,open,high,low,close,volume`` (ts in epoch ms, one
bar a minute from 2024-01-01T00:00:00Z) from :func:`stratkernel.plugins.synthetic.generate_bars`,
prices rounded to 4 decimals. Rounding is monotone, so every row stays a valid bar. The same
arguments give the same bytes. A ``<file>.json`` next to it records what was generated, so
:func:`ensure_dataset` regenerates only when the file is missing or was made with other arguments.

``bench/data/`` is git-ignored: data files are generated, never committed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from stratkernel.plugins.synthetic import DEFAULT_START_MS, WalkParams, generate_bars

__all__ = ["ensure_dataset", "write_dataset"]

GENERATOR_VERSION = 1  # bump when the output for the same arguments changes
DEFAULT_DIR = Path(__file__).resolve().parent / "data"


def _meta(bars: int, seed: int) -> dict[str, int | str]:
    return {"bars": bars, "seed": seed, "generator": GENERATOR_VERSION, "symbol": "SYNTH-USD"}


def write_dataset(bars: int, path: str | Path, *, seed: int = 1) -> Path:
    """Generate ``bars`` bars and write them to ``path`` (.csv or .parquet), atomically."""
    if type(bars) is not int or bars < 1:
        raise ValueError(f"bars must be a positive integer, got {bars!r}")
    out = Path(path)
    suffix = out.name.lower()
    if not suffix.endswith((".csv", ".parquet")):
        raise ValueError(f"{out}: the output must end in .csv or .parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    s = generate_bars(bars, start_ms=DEFAULT_START_MS, interval_ms=60_000, params=WalkParams(seed=seed))
    table = pa.table(
        {
            "ts": s.ts,
            "open": np.round(s.open, 4),
            "high": np.round(s.high, 4),
            "low": np.round(s.low, 4),
            "close": np.round(s.close, 4),
            "volume": s.volume,
        }
    )
    tmp = out.with_name(out.name + ".partial")
    if suffix.endswith(".csv"):
        with open(tmp, "wb") as f:  # a plain header: pyarrow would quote the names
            f.write((",".join(table.column_names) + "\n").encode())
            pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    else:
        pq.write_table(table, tmp)
    # a half-written file must never look like a finished dataset to ensure_dataset
    os.replace(tmp, out)
    out.with_name(out.name + ".json").write_text(json.dumps(_meta(bars, seed)) + "\n", encoding="utf-8")
    return out


def ensure_dataset(bars: int, path: str | Path | None = None, *, seed: int = 1) -> Path:
    """Return ``path`` (default ``bench/data/bars_<bars>.csv``), generating it only if it is missing
    or was generated with other arguments."""
    out = Path(path) if path is not None else DEFAULT_DIR / f"bars_{bars}.csv"
    meta = out.with_name(out.name + ".json")
    if out.is_file() and meta.is_file():
        try:
            if json.loads(meta.read_text(encoding="utf-8")) == _meta(bars, seed):
                return out
        except ValueError:
            pass  # unreadable metadata: regenerate
    return write_dataset(bars, out, seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.datagen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000, help="number of bars (default 1000000)")
    parser.add_argument("--out", type=Path, default=None, help="output .csv or .parquet file")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args(argv)
    if args.bars < 1:
        parser.error("--bars must be at least 1")
    out = args.out or DEFAULT_DIR / f"bars_{args.bars}.csv"
    t = time.perf_counter()
    try:
        write_dataset(args.bars, out, seed=args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {args.bars} bars to {out} in {time.perf_counter() - t:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
