"""``stratkernel run --reload``: restart the kernel process when its code or config changes (development).

Like ``uvicorn --reload``: this process is only a supervisor. It runs ``stratkernel <args>`` (the same
command line without ``--reload``) as a child and watches, with watchfiles,

* the stratkernel package (``**/*.py``),
* the code of every installed plugin (the modules behind the ``stratkernel`` entry-point group),
* the config file (``--config`` or ``./stratkernel.toml``).

On a change it sends the child SIGINT, the same as Ctrl-C: the runtime stops its tasks, stops the
strategies, saves their state and closes the store, so the next child resumes from the store with
positions, orders and risk state intact (the kernel restores them at start). Only if the child does
not exit within ``grace_s`` is it terminated, then killed. User scripts are *not* watched here: the
running kernel hot-reloads those itself (:mod:`stratkernel.sandbox.reload`) without a restart.

If the child exits on its own (an error, or Ctrl-C reaching the whole process group), the supervisor
returns its exit code instead of restarting it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("stratkernel.devreload")

PACKAGE_DIR = Path(__file__).resolve().parents[1]
CHILD = "import sys; from stratkernel.cli import main; sys.exit(main())"


def watched_paths(config_path: str | None) -> tuple[list[Path], set[Path]]:
    """Folders to watch (the package and plugin code) and individual files (config, single-module plugins)."""
    dirs: set[Path] = {PACKAGE_DIR}
    files: set[Path] = set()
    try:
        eps = importlib.metadata.entry_points(group="stratkernel")
    except Exception:  # a broken installation must not stop development mode
        eps = ()  # type: ignore[assignment]
    for ep in eps:
        try:
            spec = importlib.util.find_spec(ep.module.split(":")[0])
        except (ImportError, ValueError):
            continue
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        origin = Path(spec.origin).resolve()
        if origin.name == "__init__.py":
            dirs.add(origin.parent)
        elif not origin.is_relative_to(PACKAGE_DIR):
            files.add(origin)
    cfg = Path(config_path) if config_path else Path("stratkernel.toml")
    files.add(cfg.resolve())
    # a folder inside another watched folder is watched already
    roots = sorted(dirs, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for d in roots:
        if not any(d.is_relative_to(k) for k in kept):
            kept.append(d)
    return kept, files


def _relevant(files: set[Path], dirs: list[Path]) -> Callable[[object, str], bool]:
    def accept(_change: object, raw: str) -> bool:
        p = Path(raw)
        if p.resolve() in files:
            return True
        if p.suffix != ".py" or "__pycache__" in p.parts or p.name.startswith("."):
            return False
        return any(p.is_relative_to(d) for d in dirs)

    return accept


def _stop_child(proc: subprocess.Popen[bytes], grace_s: float) -> int:
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGINT)  # a clean shutdown: state, orders and positions saved in the store
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.warning("the kernel did not stop within %.0f s after SIGINT; terminating it", grace_s)
    proc.terminate()
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def run_with_reload(
    args: list[str],
    config_path: str | None,
    *,
    grace_s: float = 20.0,
    stop: threading.Event | None = None,
    extra_watch: Iterable[Path] = (),
) -> int:
    """Run ``stratkernel <args>`` in a child process and restart it on code/config changes.

    ``args`` is the CLI command line without ``--reload`` (e.g. ``["run", "--config", "k.toml"]``).
    Returns the child's exit code once it exits by itself, or 0 after ``stop`` is set (tests) or
    Ctrl-C. ``extra_watch`` adds folders (their ``*.py``) or files to the watch list.
    """
    from watchfiles import watch

    dirs, files = watched_paths(config_path)
    for p in extra_watch:
        p = Path(p).resolve()
        (dirs.append(p) if p.is_dir() else files.add(p))
    targets = [*dirs, *{f.parent for f in files if f.parent.is_dir()}]
    accept = _relevant(files, dirs)
    stop = stop or threading.Event()
    cmd = [sys.executable, "-c", CHILD, *args]
    restarts = 0
    while True:
        log.info("starting the kernel (%s)", "first start" if restarts == 0 else f"restart #{restarts}")
        proc = subprocess.Popen(cmd)
        changed: list[str] = []
        try:
            for changes in watch(
                *targets,
                watch_filter=accept,
                stop_event=stop,
                rust_timeout=500,
                yield_on_timeout=True,
                debounce=400,
                step=100,
            ):
                if proc.poll() is not None:
                    log.info("the kernel exited with code %s", proc.returncode)
                    return proc.returncode
                if changes:
                    changed = sorted({str(Path(p)) for _, p in changes})
                    break
        except KeyboardInterrupt:
            return _stop_child(proc, grace_s)
        if not changed:  # stop was set
            _stop_child(proc, grace_s)
            return 0
        shown = ", ".join(changed[:3]) + (f" (+{len(changed) - 3} more)" if len(changed) > 3 else "")
        log.warning("%s changed: restarting the kernel", shown)
        print(f"stratkernel --reload: {shown} changed; restarting", file=sys.stderr, flush=True)
        code = _stop_child(proc, grace_s)
        log.info("the kernel stopped (exit code %s)", code)
        restarts += 1
