"""One progress view for a suite or search: a live line (trials done / running / pending / failed, ETA).

Tune's own tables are off (``verbose=0``) and Ray worker output stays out of the console (``log_to_driver=False``,
:func:`sasi.platform.runtime.init_ray`); :func:`collect_worker_logs` copies it under the storage folder.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ray import tune


def quiet_tune() -> None:
    """Tune's own console output off: with its legacy engine and ``verbose=0`` it prints no experiment box, trial
    tables or TensorBoard hint (the new engine prints its box whatever the verbosity), nor "The `callbacks...`
    operation took 0.6 s" timing notes (a loaded machine makes them routine)."""
    import logging

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logging.getLogger("ray.tune.utils.util").setLevel(logging.ERROR)


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class Progress(tune.Callback):
    """Trial counts and ETA, redrawn in place on a terminal, one line per change otherwise (CI, job logs).

    Pickled with the Tuner's run config (a restored suite gets it back), so it holds no console or clock.
    """

    def __init__(self, name: str, total: int | None = None):
        self.name, self.total = name, total
        self._reset()

    def _reset(self) -> None:
        self._live = self._console = None
        self._started = time.monotonic()
        self._begun: dict[str, float] = {}  # trial id → when it was seen running (this session)
        self._durations: list[float] = []  # trials seen from start to end (this session)
        self._last = ""

    def __getstate__(self) -> dict:
        return {"name": self.name, "total": self.total}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        from rich.console import Console
        from rich.live import Live

        self._reset()
        self.total = self.total or total_num_samples
        self._console = Console(stderr=True, highlight=False)
        if self._console.is_terminal:
            self._live = Live(console=self._console, refresh_per_second=2, transient=False)
            self._live.start()

    def line(self, trials: list) -> str:
        counts = {"TERMINATED": 0, "RUNNING": 0, "ERROR": 0}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        done, running, failed = counts["TERMINATED"], counts["RUNNING"], counts["ERROR"]
        total = max(self.total or 0, len(trials))
        pending = total - done - running - failed
        now = time.monotonic()
        for t in trials:
            key = getattr(t, "trial_id", id(t))
            if t.status == "RUNNING":
                self._begun.setdefault(key, now)
            elif key in self._begun and t.status in ("TERMINATED", "ERROR"):
                self._durations.append(now - self._begun.pop(key))
        if pending + running == 0:
            eta = "finished"
        elif self._durations:  # mean trial time: what the running trials still need, then waves of the pending
            mean = sum(self._durations) / len(self._durations)
            left = max([mean - (now - t0) for t0 in self._begun.values()] + [0.0])
            waves = -(-pending // max(1, running))
            eta = f"ETA {_clock(left + waves * mean)}"
        else:
            eta = "ETA after the first trial"
        elapsed = now - self._started
        return (f"{self.name}: {done}/{total} done · {running} running · {pending} pending · {failed} failed · "
                f"{_clock(elapsed)} elapsed · {eta}")

    def _show(self, trials: list, force: bool = False) -> None:
        if self._console is None:
            return
        text = self.line(trials)
        if self._live is not None:
            self._live.update(text)
        elif force or text.split(" · ")[:4] != self._last.split(" · ")[:4]:
            self._console.print(text, soft_wrap=True)
        self._last = text

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        self._show(trials)

    def on_experiment_end(self, trials: list, **info) -> None:
        self._show(trials, force=self._live is None)
        if self._live is not None:
            self._live.stop()
            self._live = None


def collect_worker_logs(folder: str | Path) -> Path | None:
    """Copy this Ray session's worker output (``worker-*.out/.err``, non-empty) into ``folder``; None when there is
    none or Ray runs elsewhere (``ray job submit``: the job's logs hold it)."""
    try:
        import ray

        node = getattr(ray._private.worker, "_global_node", None)  # a cluster this process started
        logs = Path(node.get_logs_dir_path()) if node is not None and ray.is_initialized() else None
    except Exception:
        return None
    if logs is None or not logs.is_dir():
        return None
    folder = Path(folder)
    copied = 0
    for f in sorted(logs.glob("worker-*")):
        if f.suffix in (".out", ".err") and f.is_file() and f.stat().st_size > 0:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, folder / f.name)
            copied += 1
    return folder if copied else None
