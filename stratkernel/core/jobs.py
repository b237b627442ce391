"""A backtest in its own process, for API jobs: ``python -m stratkernel.core.jobs '<json spec>'``.

Prints ``P <fraction>`` progress lines and one final ``R <json>`` line with the summary or the error.
"""

from __future__ import annotations

import json
import sys

from .errors import StratkernelError


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    from .backtest import run_backtest
    from .plugins import load_plugins

    last = [-1.0]

    def progress(i: int, n: int) -> None:
        frac = round(i / n, 3) if n else 1.0
        if frac - last[0] >= 0.01 or frac == 1.0:
            last[0] = frac
            print(f"P {frac}", flush=True)

    try:
        result = run_backtest(
            spec["strategy"],
            spec["data"],
            params=spec.get("params") or {},
            plugins=load_plugins(),
            progress=progress,
        )
    except StratkernelError as exc:
        print("R " + json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}), flush=True)
        return 0
    print("R " + json.dumps({"summary": result.summary()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
