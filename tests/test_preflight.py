"""Resume safety and interrupt helpers without Ray: a changed suite/search is refused unless --restart."""

from __future__ import annotations

import pytest

from sasi.errors import SasiError
from sasi.platform import interrupts, resume_safety


def test_changed_config_is_refused_unless_restart(tmp_path):
    folder = tmp_path / "smoke"
    config = {"variants": {"a": {"train": {"iterations": 20}}}, "shots": [3]}
    assert resume_safety.check_resume(folder, config, "sasi ablate s.yaml", restart=False) is False  # nothing stored
    resume_safety.store_config(folder, config)
    assert resume_safety.check_resume(folder, config, "sasi ablate s.yaml", restart=False) is True  # same: resume
    changed = {"variants": {"a": {"train": {"iterations": 30}}}, "shots": [3]}
    with pytest.raises(SasiError, match=r"variants\.a\.train\.iterations.*--restart"):
        resume_safety.check_resume(folder, changed, "sasi ablate s.yaml", restart=False)
    assert resume_safety.check_resume(folder, changed, "sasi ablate s.yaml", restart=True) is False
    assert not folder.exists() and len(list(tmp_path.glob("smoke.replaced-*"))) == 1  # old results kept aside


def test_resume_command_and_error_lines(monkeypatch):
    monkeypatch.setattr("sys.argv", ["sasi", "tune", "s.yaml", "--restart", "--storage", "runs x"])
    assert interrupts.command_line(add=("--resume",)) == "sasi tune s.yaml --storage 'runs x' --resume"
    assert interrupts.Interrupted(15, "sasi tune s.yaml").exit_code == 143
    wrapped = "ray::_Inner.train()\nray.exceptions.RayTaskError(TrainingFailedError): x\nValueError: real cause"
    assert interrupts.error_line(wrapped) == "ValueError: real cause"


def test_git_sha_from_the_runtime_env(monkeypatch):
    from sasi.platform import tracking

    monkeypatch.setenv("SASI_GIT_SHA", "abc123")
    assert tracking.provenance_tags()["git_sha"] == "abc123"
