"""Bad input, table-driven: every case runs the real CLI (``sasi.cli.main``, in this process for speed) and must
exit non-zero with exactly one line on stderr, no traceback, and no output file (not even a partial one).

Cases that would need Ray must fail in the pre-flight check: ``init_ray`` is replaced by a function that fails
the test. One case runs ``python -m sasi`` in a subprocess to check the real entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VOXEL = 10.0
SHAPE = (16, 32, 32)


def _sphere_map(shape, centres_zyx, radius):
    zz, yy, xx = np.indices(shape)
    out = np.zeros(shape, np.int16)
    for i, (z, y, x) in enumerate(centres_zyx, start=1):
        out[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2] = i
    return out


def _write_dataset(root: Path, per_class: dict[str, int] | None = None, *, nan_row: bool = False,
                   outside_row: bool = False) -> Path:
    """A hand-made 2-class dataset (train/val/test, 16×32×32 at 10 Å): fast to build, enough for the checks."""
    from sasi.io import write_mrc
    from sasi.io.particles import make_particles, write_particles

    rng = np.random.default_rng(0)
    per_class = per_class or {"a": 3, "b": 3}
    splits = {"train": ["train_00"], "val": ["val_00"], "test": ["test_00"]}
    for names in splits.values():
        for name in names:
            folder = root / name
            folder.mkdir(parents=True)
            labels, zyx = [], []
            for cls, n in per_class.items():
                for _ in range(n):
                    labels.append(cls)
                    zyx.append((rng.integers(4, 12), rng.integers(4, 28), rng.integers(4, 28)))
            xyz = np.asarray(zyx, float).reshape(-1, 3)[:, ::-1] * VOXEL
            if nan_row and len(xyz):
                xyz[0, 0] = np.nan
            if outside_row and len(xyz):
                xyz[0, 0] = 10_000.0
            write_mrc(folder / "tomogram.mrc", rng.normal(size=SHAPE).astype(np.float32), VOXEL)
            write_mrc(folder / "occupancy_mask.mrc", _sphere_map(SHAPE, zyx, 2), VOXEL)
            write_particles(make_particles(name, labels, xyz), folder / "particles.parquet")
    (root / "dataset.yaml").write_text(yaml.safe_dump({"classes": sorted(per_class), "radii": dict.fromkeys(
        sorted(per_class), 30.0), "voxel_size": VOXEL, "splits": splits}))
    return root


def _readonly_dir(base: Path) -> Path:
    """A folder nobody can write to: chmod 0555, or (as root, who ignores modes) the read-only sysfs."""
    folder = base / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError:
        return folder
    if os.path.isdir("/sys") and not os.access("/sys", os.W_OK | os.X_OK) or _cannot_write("/sys"):
        return Path("/sys")
    pytest.skip("no read-only folder available")


def _cannot_write(folder: str) -> bool:
    try:
        with tempfile.NamedTemporaryFile(dir=folder):
            return False
    except OSError:
        return True


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Paths every case can use (formatted into its arguments as ``{name}``)."""
    base = tmp_path_factory.mktemp("bad")
    from sasi.io import write_mrc

    p = {"tmp": base, "ds": _write_dataset(base / "ds"), "empty_ds": _write_dataset(base / "empty_ds", {"a": 0, "b": 0}),
         "nan_ds": _write_dataset(base / "nan_ds", nan_row=True),
         "outside_ds": _write_dataset(base / "outside_ds", outside_row=True), "ro": _readonly_dir(base)}
    p["file"] = base / "a-file"
    p["file"].write_text("not a folder\n")
    (base / "corrupt.mrc").write_bytes(b"this is not an MRC file at all" * 40)
    good = p["ds"] / "test_00" / "tomogram.mrc"
    (base / "truncated.mrc").write_bytes(good.read_bytes()[:2000])
    write_mrc(base / "zeros.mrc", np.zeros(SHAPE, np.float32), VOXEL)
    write_mrc(base / "small.mrc", np.random.default_rng(1).normal(size=(4, 8, 8)).astype(np.float32), VOXEL)
    write_mrc(base / "angstrom5.mrc", np.random.default_rng(2).normal(size=SHAPE).astype(np.float32), 5.0)
    nan = np.random.default_rng(3).normal(size=SHAPE).astype(np.float32)
    nan[0, 0, 0] = np.nan
    write_mrc(base / "nan.mrc", nan, VOXEL)
    import mrcfile

    with mrcfile.new(base / "int8.mrc") as mrc:
        mrc.set_data(np.random.default_rng(4).integers(-100, 100, size=SHAPE).astype(np.int8))
        mrc.voxel_size = VOXEL
    for name, text in {
        "invalid.yaml": "name: x\ndata: {dataset: [unclosed\n",
        "empty.yaml": "",
        "list.yaml": "- 1\n- 2\n",
        "no-seeds.yaml": "name: s\nrecipe: tiny-v1\nshots: [1]\nvariants: {a: {preset: df-cc3d}}\n",
        "no-name.yaml": "recipe: tiny-v1\nshots: [1]\nseeds: [0]\nvariants: {a: {preset: df-cc3d}}\n",
        "bad-recipe.yaml": "name: s\nrecipe: nope-v9\nshots: [1]\nseeds: [0]\nvariants: {a: {preset: df-cc3d}}\n",
        "unknown-key.yaml": "name: x\ndata: {dataset: x}\ntrian: {iterations: 2}\n",
    }.items():
        (base / name).write_text(text)
    small = {"data": {"patch": 16, "shots": 2}, "model": {"channels": [4, 8, 8]},
             "train": {"iterations": 2, "eval_every": 0, "batch_size": 1, "device": "cpu"}}

    def run_config(name: str, dataset: Path, **data):
        body = {"name": name, **small, "data": {**small["data"], "dataset": str(dataset), **data}}
        (base / f"{name}.yaml").write_text(yaml.safe_dump(body))

    run_config("run", p["ds"])
    run_config("run-missing-ds", base / "nowhere")
    run_config("run-shots", p["ds"], shots=9)
    run_config("run-empty", p["empty_ds"])
    run_config("run-nan", p["nan_ds"])
    run_config("run-outside", p["outside_ds"])
    run_config("run-zero-shots", p["ds"], shots=0)
    run_config("run-no-val-tomo", p["ds"], val_tomogram="val_99")

    def space(name: str, dataset: Path, metric="val_class_f1", params=None, shots=2, studies=None):
        body = {"name": name, "preset": "df-cc3d",
                "base": {**small, "data": {**small["data"], "dataset": str(dataset), "shots": shots}},
                "objective": {"metric": metric, "mode": "max"},
                "parameters": params or {"train.lr": {"type": "log", "low": 1e-4, "high": 1e-2}},
                **({"shots": studies} if studies else {})}
        (base / f"{name}.yaml").write_text(yaml.safe_dump(body))

    space("space", p["ds"])
    space("space-metric", p["ds"], metric="val_f2")
    space("space-param", p["ds"], params={"train.lrr": {"type": "log", "low": 1e-4, "high": 1e-2}})
    space("space-missing", base / "nowhere")
    space("space-shots", p["ds"], shots=4)
    space("space-shots-choice", p["ds"], params={"data.shots": {"type": "choice", "values": [1, 5]}})
    space("space-shots-studies", p["ds"], shots=1, studies=[1, 5])

    def suite(name: str, **body):
        full = {"name": name, "recipe": "tiny-v1", "shots": [1], "seeds": [0],
                "variants": {"a": {"preset": "df-cc3d"}}, **body}
        (base / f"{name}.yaml").write_text(yaml.safe_dump(full))

    suite("suite-bad-shots", shots=[0])
    suite("suite-bad-variant", variants={"a": {"preset": "nope"}})
    suite("suite-bad-resources", resources={"workers": 0})
    # a tiny trained checkpoint for the predict cases (in this process, no Ray)
    from sasi.cli import main

    code, err = _run(["train", str(base / "run.yaml"), "--workers", "0", "--storage", str(base / "runs")], main)
    assert code == 0, err
    p["ckpt"] = sorted((base / "runs" / "run").glob("checkpoint_*"))[-1]
    return p


def _run(args: list[str], main=None) -> tuple[int, str]:
    """``sasi <args>`` through :func:`sasi.cli.main` (its exit status and error printing), capturing stderr."""
    import contextlib
    import io

    from sasi.cli import main as cli_main

    err = io.StringIO()
    argv = sys.argv
    sys.argv = ["sasi", *args]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                (main or cli_main)()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, err.getvalue()


P = "{tmp}/out"  # an output path no case may leave behind
CASES = {
    # --- MRC files --------------------------------------------------------------------------------------------
    "inspect-corrupt-mrc": (["inspect", "{tmp}/corrupt.mrc"], "not a readable MRC"),
    "inspect-truncated-mrc": (["inspect", "{tmp}/truncated.mrc"], "MRC"),
    "inspect-missing-file": (["inspect", "{tmp}/nothing.mrc"], "not found"),
    "inspect-unknown-suffix": (["inspect", "{tmp}/invalid.yaml"], "cannot inspect"),
    "predict-corrupt-mrc": (["predict", "{ckpt}", "{tmp}/corrupt.mrc", "--out", P + "/p1.parquet"], "MRC"),
    "predict-truncated-mrc": (["predict", "{ckpt}", "{tmp}/truncated.mrc", "--out", P + "/p2.parquet"], "MRC"),
    "predict-wrong-voxel-size": (["predict", "{ckpt}", "{tmp}/angstrom5.mrc", "--out", P + "/p3.parquet"], "voxel size"),
    "predict-nan-tomogram": (["predict", "{ckpt}", "{tmp}/nan.mrc", "--out", P + "/p4.parquet"], "NaN"),
    "predict-all-zero": (["predict", "{ckpt}", "{tmp}/zeros.mrc", "--out", P + "/p5.parquet"], "constant"),
    "predict-4x8x8": (["predict", "{ckpt}", "{tmp}/small.mrc", "--out", P + "/p6.parquet"], "smaller"),
    "predict-int8": (["predict", "{ckpt}", "{tmp}/int8.mrc", "--out", P + "/p7.parquet"], "8-bit"),
    "predict-cuda-without-cuda": (["predict", "{ckpt}", "{ds}/test_00/tomogram.mrc", "--device", "cuda",
                                   "--out", P + "/p8.parquet"], "CUDA"),
    "predict-bad-device": (["predict", "{ckpt}", "{ds}/test_00/tomogram.mrc", "--device", "tpu",
                            "--out", P + "/p9.parquet"], "--device"),
    "predict-readonly-out": (["predict", "{ckpt}", "{ds}/test_00/tomogram.mrc", "--out", "{ro}/sub/picks.parquet"],
                             "--out"),
    "predict-out-is-under-a-file": (["predict", "{ckpt}", "{ds}/test_00/tomogram.mrc", "--out",
                                     "{file}/picks.parquet"], "--out"),
    "predict-bad-tile": (["predict", "{ckpt}", "{ds}/test_00/tomogram.mrc", "--tile", "250", "--out",
                          P + "/p10.parquet"], "--tile"),
    "predict-bad-out-suffix": (["predict", "{ckpt}", "{ds}/test_00/tomogram.mrc", "--out", P + "/picks.txt"], "format"),
    "predict-missing-checkpoint": (["predict", "{tmp}/no-ckpt", "{ds}/test_00/tomogram.mrc", "--out",
                                    P + "/p10.parquet"], "checkpoint"),
    # --- simulate ----------------------------------------------------------------------------------------------
    "simulate-negative-snr": (["simulate", P + "/s1", "--snr", "-1"], "--snr"),
    "simulate-zero-shape": (["simulate", P + "/s2", "--shape", "0", "32", "32"], "--shape"),
    "simulate-tiny-shape": (["simulate", P + "/s3", "--shape", "2", "2", "2"], "--shape"),
    "simulate-zero-voxel": (["simulate", P + "/s4", "--voxel-size", "0"], "--voxel-size"),
    "simulate-density": (["simulate", P + "/s5", "--density", "1.5"], "--density"),
    "simulate-zero-workers": (["simulate", P + "/s6", "--workers", "0"], "--workers"),
    "simulate-zero-tomograms": (["simulate", P + "/s6", "--tomograms", "0"], "--tomograms"),
    "simulate-unknown-recipe": (["simulate", P + "/s7", "--recipe", "nope-v9"], "unknown recipe"),
    "simulate-bad-imaging": (["simulate", P + "/s8", "--imaging", "xray"], "--imaging"),
    "simulate-readonly-out": (["simulate", "{ro}/sim", "--shape", "16", "32", "32"], "folder"),
    "simulate-out-is-a-file": (["simulate", "{file}", "--shape", "16", "32", "32"], "file"),
    "simulate-missing-templates": (["simulate", P + "/s9", "--templates", "{tmp}/no-templates"], "template"),
    # --- evaluate ----------------------------------------------------------------------------------------------
    "evaluate-unknown-label": (["evaluate", "--dataset", "{ds}", "--pred", "{tmp}/unknown-label.csv"], "'a', 'b'"),
    "evaluate-missing-pred": (["evaluate", "--dataset", "{ds}", "--pred", "{tmp}/nothing.parquet"], "not found"),
    "evaluate-no-dataset": (["evaluate", "--pred", "{tmp}/unknown-label.csv"], "--dataset"),
    "evaluate-bad-rule": (["evaluate", "--dataset", "{ds}", "--pred", "{tmp}/good.csv", "--rule", "nearest"], "rule"),
    "evaluate-readonly-json": (["evaluate", "--dataset", "{ds}", "--pred", "{tmp}/good.csv", "--json",
                                "{ro}/sub/scores.json"], "--json"),
    # --- train (pre-flight; nothing trains) -----------------------------------------------------------------------
    "train-invalid-yaml": (["train", "{tmp}/invalid.yaml", "--workers", "0", "--storage", P + "/t"], "invalid YAML"),
    "train-unknown-key": (["train", "{tmp}/unknown-key.yaml", "--workers", "0", "--storage", P + "/t"], "unknown key"),
    "train-missing-dataset": (["train", "{tmp}/run-missing-ds.yaml", "--storage", P + "/t"], "sasi simulate"),
    "train-shots-above-particles": (["train", "{tmp}/run-shots.yaml", "--storage", P + "/t"], "9 shots"),
    "train-empty-label-set": (["train", "{tmp}/run-empty.yaml", "--storage", P + "/t"], "fewer labelled"),
    "train-zero-shots": (["train", "{tmp}/run-zero-shots.yaml", "--storage", P + "/t"], "shots"),
    "train-nan-coordinates": (["train", "{tmp}/run-nan.yaml", "--storage", P + "/t"], "NaN"),
    "train-coordinates-outside": (["train", "{tmp}/run-outside.yaml", "--storage", P + "/t"], "outside the volume"),
    "train-missing-val-tomogram": (["train", "{tmp}/run-no-val-tomo.yaml", "--storage", P + "/t"], "val_99"),
    "train-storage-is-file": (["train", "{tmp}/run.yaml", "--storage", "{file}"], "is a file"),
    "train-storage-readonly": (["train", "{tmp}/run.yaml", "--storage", "{ro}/runs"], "--storage"),
    "train-mlflow-readonly": (["train", "{tmp}/run.yaml", "--storage", P + "/t", "--tracking-uri",
                               "sqlite:///{ro}/sub/mlflow.db"], "MLflow"),
    "train-negative-workers": (["train", "{tmp}/run.yaml", "--workers", "-1", "--storage", P + "/t"], "--workers"),
    # --- tune (pre-flight) ---------------------------------------------------------------------------------------
    "tune-unknown-objective": (["tune", "{tmp}/space-metric.yaml", "--storage", P + "/u"], "val_f2"),
    "tune-unknown-parameter": (["tune", "{tmp}/space-param.yaml", "--storage", P + "/u"], "train.lrr"),
    "tune-zero-trials": (["tune", "{tmp}/space.yaml", "--trials", "0", "--storage", P + "/u"], "--trials"),
    "tune-missing-dataset": (["tune", "{tmp}/space-missing.yaml", "--storage", P + "/u"], "dataset not found"),
    "tune-shots-above-particles": (["tune", "{tmp}/space-shots.yaml", "--storage", P + "/u"], "4 shots"),
    "tune-shots-as-a-dimension": (["tune", "{tmp}/space-shots-choice.yaml", "--storage", P + "/u"], "a condition"),
    "tune-study-shots-above": (["tune", "{tmp}/space-shots-studies.yaml", "--storage", P + "/u"], "5 shots"),
    "tune-storage-is-file": (["tune", "{tmp}/space.yaml", "--storage", "{file}"], "is a file"),
    "tune-storage-readonly": (["tune", "{tmp}/space.yaml", "--storage", "{ro}/runs"], "--storage"),
    "tune-resume-and-restart": (["tune", "{tmp}/space.yaml", "--resume", "--restart", "--storage", P + "/u"], "--restart"),
    "tune-bad-scheduler": (["tune", "{tmp}/space.yaml", "--scheduler", "pbt", "--storage", P + "/u"], "--scheduler"),
    "tune-invalid-yaml": (["tune", "{tmp}/invalid.yaml", "--storage", P + "/u"], "invalid YAML"),
    # --- ablate (pre-flight) -------------------------------------------------------------------------------------
    "ablate-empty-suite": (["ablate", "{tmp}/empty.yaml", "--storage", P + "/v"], "empty"),
    "ablate-suite-is-a-list": (["ablate", "{tmp}/list.yaml", "--storage", P + "/v"], "mapping"),
    "ablate-suite-missing-seeds": (["ablate", "{tmp}/no-seeds.yaml", "--storage", P + "/v"], "seeds"),
    "ablate-suite-missing-name": (["ablate", "{tmp}/no-name.yaml", "--storage", P + "/v"], "name"),
    "ablate-unknown-recipe": (["ablate", "{tmp}/bad-recipe.yaml", "--storage", P + "/v"], "unknown recipe"),
    "ablate-zero-shots": (["ablate", "{tmp}/suite-bad-shots.yaml", "--storage", P + "/v"], "shots"),
    "ablate-unknown-preset": (["ablate", "{tmp}/suite-bad-variant.yaml", "--storage", P + "/v"], "preset"),
    "ablate-zero-workers": (["ablate", "{tmp}/suite-bad-resources.yaml", "--storage", P + "/v"], "workers"),
    "ablate-invalid-yaml": (["ablate", "{tmp}/invalid.yaml", "--storage", P + "/v"], "invalid YAML"),
    "ablate-storage-is-file": (["ablate", str(ROOT / "ablations" / "smoke.yaml"), "--storage", "{file}"], "is a file"),
    "ablate-storage-readonly": (["ablate", str(ROOT / "ablations" / "smoke.yaml"), "--storage", "{ro}/runs"],
                                "--storage"),
    "ablate-missing-file": (["ablate", "{tmp}/nothing.yaml", "--storage", P + "/v"], "not found"),
}


@pytest.fixture(scope="module")
def picks(env):
    from sasi.io.particles import make_particles, write_particles

    write_particles(make_particles("test_00", ["zzz"], np.array([[100.0, 100.0, 80.0]])), env["tmp"] / "unknown-label.csv")
    write_particles(make_particles("test_00", ["a"], np.array([[100.0, 100.0, 80.0]])), env["tmp"] / "good.csv")


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clean_line(case, env, picks, monkeypatch):
    import sasi.platform.runtime

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started: this input must fail in the pre-flight check")

    monkeypatch.setattr(sasi.platform.runtime, "init_ray", no_ray)
    args, expected = CASES[case]
    args = [a.format(**env) for a in args]
    before = _files(env["tmp"])
    code, err = _run(args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, f"exit 0 for bad input; stderr: {err!r}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    assert expected.lower() in lines[0].lower(), lines[0]
    new = _files(env["tmp"]) - before
    left = [p for p in new if not p.name.startswith(".sasi-write-probe")]
    assert not left, f"left files behind: {sorted(map(str, left))[:5]}"


def test_real_entry_point_is_one_line():
    """``python -m sasi`` (the installed entry point's code path) with a bad argument: one line, exit 1."""
    out = subprocess.run([sys.executable, "-m", "sasi", "simulate", "/nonexistent-sasi/x", "--snr", "-1"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "--snr" in out.stderr, out.stderr


def test_table_has_at_least_30_cases():
    assert len(CASES) >= 30
