"""SIGINT/SIGTERM during a suite or search: stop cleanly, close MLflow runs as KILLED, say how to resume.

Inside ``Tuner.fit`` the first signal takes Tune's own graceful path (the experiment state is saved and the
trials are stopped; Tune listens on SIGUSR1 for this, so Ctrl-C and SIGTERM are forwarded there); outside it,
and on a second signal, :class:`Stopped` is raised at once. Either way the caller closes the suite's MLflow
runs as KILLED, writes no summary, and the CLI exits with 128 + the signal number (130, 143).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from sasi.errors import SasiError

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_TUNE_ENV = "TUNE_DISABLE_SIGINT_HANDLER"


class Stopped(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error of the program
    """Raised by the handler when a stop signal cannot be handed to Tune (or arrives a second time)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Interrupted(SasiError):
    """The one-line error the CLI prints for an interrupted suite/search; exits with 128 + signal."""

    def __init__(self, signum: int, resume: str):
        self.signum, self.exit_code = signum, 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}; finished trials and checkpoints are "
                         f"kept, nothing was summarised. Resume with the same command: {resume}")


def command_line(add: tuple[str, ...] = (), drop: tuple[str, ...] = ("--restart",)) -> str:
    """This process's command as the user would retype it to resume (``sasi …``): ``drop`` flags removed,
    ``add`` flags appended if missing."""
    args = [a for a in sys.argv[1:] if a not in drop]
    return shlex.join(["sasi", *args, *[a for a in add if a not in args]])


class _DropRestoreHint(logging.Filter):
    """Ray's 'Resume experiment with: Tuner.restore(...)' is not how sasi resumes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore" not in record.getMessage()


class StopSignals:
    """Installed for the whole suite/search (after ``ray.init``, which sets its own SIGTERM handler)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.fitting = False

    def handler(self, signum: int, frame) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        tune_handler = signal.getsignal(signal.SIGUSR1)
        if first and self.fitting and callable(tune_handler):
            tune_handler(signal.SIGUSR1, frame)  # Tune's graceful stop: save state, stop trials, return
            return
        raise Stopped(self.signum)

    def check(self) -> None:
        """After ``Tuner.fit``: raise :class:`Stopped` if a signal stopped it."""
        if self.signum is not None:
            raise Stopped(self.signum)

    @contextlib.contextmanager
    def fit(self) -> Iterator[None]:
        self.fitting = True
        try:
            yield
        finally:
            self.fitting = False


@contextlib.contextmanager
def stop_signals() -> Iterator[StopSignals]:
    state = StopSignals()
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    env = os.environ.get(_TUNE_ENV)
    os.environ[_TUNE_ENV] = "1"  # Tune would otherwise replace our SIGINT handler with its own
    hint = _DropRestoreHint()
    logging.getLogger("ray.tune.tune").addFilter(hint)
    for s in SIGNALS:
        signal.signal(s, state.handler)
    try:
        yield state
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
        logging.getLogger("ray.tune.tune").removeFilter(hint)
        if env is None:
            os.environ.pop(_TUNE_ENV, None)
        else:
            os.environ[_TUNE_ENV] = env


@contextlib.contextmanager
def guarded(uri: str, experiment_id: str, parent_id: str, resume: str) -> Iterator[StopSignals]:
    """The body of a suite/search after its MLflow parent run exists: on a stop signal every RUNNING run of
    the suite ends KILLED and :class:`Interrupted` is raised; on any other error they end FAILED."""
    from sasi.platform import tracking

    with stop_signals() as stop:
        try:
            yield stop
        except (Stopped, KeyboardInterrupt) as exc:
            signum = getattr(exc, "signum", None) or stop.signum or signal.SIGINT
            tracking.best_effort("closing the suite's MLflow runs", tracking.close_suite, uri, experiment_id,
                                 parent_id, "KILLED", {"sasi.interrupted": signal.Signals(signum).name})
            raise Interrupted(signum, resume) from None
        except BaseException:
            tracking.best_effort("closing the suite's MLflow runs", tracking.close_suite, uri, experiment_id,
                                 parent_id, "FAILED")
            raise


_WRAPPERS = ("RayTaskError", "RayActorError", "TuneError", "TrainingFailedError", "WorkerGroupError",
             "ControllerError", "ActorDiedError")


def error_line(error: BaseException | str | None) -> str:
    """The first real cause of a trial's error in one line: a ``SasiError`` line if there is one, else the
    first ``SomethingError: …`` line that is not one of Ray's wrappers, else the first line."""
    if not error:
        return ""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    pattern = re.compile(r"^(?:[\w.]+\.)?([A-Z]\w*(?:Error|Exception|Failure|Interrupt|Exit))\b(?::|$)")
    named = [(m.group(1), line) for line in lines if (m := pattern.match(line))]
    for name, line in named:
        if name == "SasiError":
            return line[:400]
    for name, line in named:
        if not name.startswith(_WRAPPERS):
            return line[:400]
    return (lines[0] if lines else type(error).__name__)[:400]


def raise_if_all_failed(grid) -> None:
    """No trial finished without an error: one line naming the first failed trial and its cause."""
    results = list(grid)
    failed = [r for r in results if r.error]
    if results and len(failed) == len(results):
        first = failed[0]
        trial = (first.metrics or {}).get("trial_id") or Path(str(first.path or "")).name or "?"
        raise SasiError(f"all {len(results)} trials failed (first: trial {trial}: {error_line(first.error)})")
