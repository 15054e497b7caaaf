"""sasi: few-shot particle detection in cryo-ET tomograms (SaSi), with a Ray/Optuna/MLflow platform on top."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sasi")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "uninstalled"
