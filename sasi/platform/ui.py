"""Browsing results: the MLflow UI on a suite's store, optuna-dashboard on a search's mirrored Optuna study.

Both servers come from the ``ui`` extra (``pip install -e ".[ui]"``): full ``mlflow`` (``mlflow-skinny``, a
core dependency, has no UI) and ``optuna-dashboard``. Full mlflow 3.17 pins ``pyarrow<26``; to keep this
environment as it is, install the extra into another virtual environment and pass it with ``--ui-env``
(or ``$SASI_UI_ENV``): its ``bin/mlflow`` and ``bin/optuna-dashboard`` are run.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from sasi.errors import SasiError

UI_ENV = "SASI_UI_ENV"
HINT = ('install the ui extra (pip install -e ".[ui]"; full mlflow pins pyarrow<26), or install it into '
        "another venv and pass --ui-env /path/to/venv (or set $SASI_UI_ENV)")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def full_mlflow_here() -> bool:
    """Whether this environment has full mlflow (the server and its built web UI), not only mlflow-skinny."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.origin:
        return False
    ui_build = Path(spec.origin).parent / "server" / "js" / "build"
    return ui_build.is_dir() and importlib.util.find_spec("flask") is not None


def _env_bin(ui_env: str | os.PathLike | None, name: str) -> Path | None:
    ui_env = ui_env or os.environ.get(UI_ENV)
    if not ui_env:
        return None
    path = Path(ui_env)
    candidates = [path / "bin" / name, path / "Scripts" / f"{name}.exe", path]
    found = next((c for c in candidates if c.is_file() and os.access(c, os.X_OK) and c.name.startswith(name)),
                 None)
    if found is None:
        raise SasiError(f"no {name} executable in this ui environment", path)
    return found


def mlflow_command(tracking_uri: str, host: str, port: int, ui_env: str | os.PathLike | None = None,
                   workers: int = 1) -> list[str]:
    """The ``mlflow ui`` command line (this environment's full mlflow, else the one in ``ui_env``)."""
    exe = _env_bin(ui_env, "mlflow")
    if exe is not None:
        base = [str(exe)]
    elif full_mlflow_here():
        base = [sys.executable, "-m", "mlflow"]
    else:
        raise SasiError(f"the MLflow UI needs full mlflow, this environment has only mlflow-skinny: {HINT}")
    return base + ["ui", "--backend-store-uri", tracking_uri, "--host", host, "--port", str(port),
                   "--workers", str(workers)]


def optuna_command(storage_url: str, host: str, port: int, ui_env: str | os.PathLike | None = None) -> list[str]:
    """The ``optuna-dashboard`` command line (this environment's, else the one in ``ui_env``)."""
    exe = _env_bin(ui_env, "optuna-dashboard")
    if exe is not None:
        base = [str(exe)]
    elif importlib.util.find_spec("optuna_dashboard") is not None:
        base = [sys.executable, "-c", "import sys; from optuna_dashboard._cli import main; sys.exit(main())"]
    else:
        raise SasiError(f"optuna-dashboard is not installed: {HINT}")
    return base + [storage_url, "--host", host, "--port", str(port)]


def store_uri(storage: str | os.PathLike, tracking_uri: str | None = None) -> str:
    """``tracking_uri`` (else ``$MLFLOW_TRACKING_URI``), else the suite's ``<storage>/mlflow.db``, which must exist."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            uri = f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
        if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
            raise SasiError(f"no MLflow store at {uri}")
        return uri
    if "://" in str(storage):
        raise SasiError(f"pass --tracking-uri for remote storage {storage}")
    db = Path(storage).resolve() / "mlflow.db"
    if not db.is_file():
        raise SasiError(f"no MLflow store here (mlflow.db): run `sasi ablate … --storage {storage}` "
                        "first, or pass --storage or --tracking-uri", Path(storage))
    return f"sqlite:///{db}"


def optuna_storage(storage: str | os.PathLike, study: str | None = None) -> str:
    """The SQLite URL of the mirrored study ``<storage>/<study>-optuna.db`` (the only one when not named)."""
    folder = Path(storage)
    if study:
        path = folder / f"{study}-optuna.db"
        if not path.is_file():
            raise SasiError(f"no Optuna study {study!r} mirrored here ({path.name})", folder)
        return f"sqlite:///{path.resolve()}"
    found = sorted(folder.glob("*-optuna.db"))
    if not found:
        raise SasiError("no mirrored Optuna study here (*-optuna.db; `sasi tune` writes one)", folder)
    if len(found) > 1:
        names = ", ".join(p.name[: -len("-optuna.db")] for p in found)
        raise SasiError(f"several Optuna studies here ({names}): choose one with --study", folder)
    return f"sqlite:///{found[0].resolve()}"


def runs_link(tracking_uri: str, url: str) -> str | None:
    """Deep link to the runs table of the ``sasi`` experiment (MLflow 3 otherwise opens its GenAI view)."""
    from sasi.platform.tracking import EXPERIMENT

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).is_file():
        return None  # opening it would create an empty store
    try:
        from mlflow.tracking import MlflowClient

        experiment = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(EXPERIMENT)
    except Exception:  # noqa: BLE001 - only a convenience link
        return None
    if experiment is None:
        return None
    return f"{url}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"


def check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise SasiError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port") from None


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host in ("::", "::1") else host)
    return f"http://{shown}:{port}"


def wait_until_up(url: str, timeout: float, alive: Callable[[], bool] = lambda: True) -> bool:
    """Poll ``url`` until it answers (any HTTP status) or ``timeout`` seconds pass or ``alive()`` turns false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.3)
    return False


def serve(command: Sequence[str], url: str, probe: str, what: str, echo: Callable[[str], None] = print,
          ready_timeout: float = 120.0) -> int:
    """Run a server until it exits, Ctrl-C or SIGTERM; its whole process group is stopped on the way out."""
    proc = subprocess.Popen(list(command), start_new_session=True)

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        echo(f"{what}: {url}  (Ctrl-C stops it)")
        if wait_until_up(url + probe, ready_timeout, lambda: proc.poll() is None):
            echo(f"{what} is up at {url}")
        elif proc.poll() is None:
            echo(f"{what} has not answered yet at {url}")
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass

