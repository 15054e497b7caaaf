"""The README's "Worked example" runs verbatim (only the training budget shrunk) and its picks name the dataset's
tomograms, so ``sasi evaluate --dataset`` finds their ground truth."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# README text -> test text: a few iterations instead of 2000 (and the checkpoint that budget writes)
SHRINK = {"iterations: 2000, eval_every: 500": "iterations: 4, eval_every: 4", "epochs: 10": "epochs: 1",
          "checkpoint_002000": "checkpoint_000004"}


def worked_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Worked example", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README has no bash block under 'Worked example'"
    script = block.group(1)
    for old, new in SHRINK.items():
        assert old in script, f"the README's worked example changed: {old!r} not found; update SHRINK"
        script = script.replace(old, new)
    return script


def test_readme_worked_example_runs_verbatim(tmp_path):
    import pyarrow.compute as pc

    from sasi.io import read_particles

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", worked_example()], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert (tmp_path / "scores.json").is_file()
    picks = read_particles(tmp_path / "picks.star", voxel_size=10.0)
    names = set(pc.unique(picks.column("tomogram")).to_pylist())
    assert names <= {"test_00"}, names  # the tomogram's folder, never the file stem "tomogram"


def test_predict_names_tomograms(tmp_path):
    from sasi.io.mrc import tomogram_name

    (tmp_path / "ds" / "tomo_07").mkdir(parents=True)
    assert tomogram_name(tmp_path / "ds" / "tomo_07" / "tomogram.mrc") == "tomo_07"
    assert tomogram_name(tmp_path / "TS_01.mrc") == "TS_01"
