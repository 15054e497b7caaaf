"""One progress view for suites and searches (no Ray cluster: Tune's callback hooks called directly)."""

import pickle
from types import SimpleNamespace

from sasi.platform.progress import Progress, collect_worker_logs


def trials(*statuses):
    return [SimpleNamespace(status=s, trial_id=str(i)) for i, s in enumerate(statuses)]


def test_progress_counts_eta_and_one_line_per_change(capsys):
    view = Progress("smoke", total=4)
    view.setup(total_num_samples=4)  # not a terminal under pytest: a line per change
    assert view._live is None
    view.on_step_begin(0, trials("RUNNING", "RUNNING"))
    view.on_step_begin(1, trials("RUNNING", "RUNNING"))  # no change: no new line
    view.on_step_begin(2, trials("TERMINATED", "RUNNING", "ERROR"))
    view.on_experiment_end(trials("TERMINATED", "TERMINATED", "ERROR", "TERMINATED"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("smoke: 0/4 done · 2 running · 2 pending · 0 failed") and "after the first trial" in lines[0]
    assert lines[1].startswith("smoke: 1/4 done · 1 running · 1 pending · 1 failed") and "ETA " in lines[1]
    assert lines[2].startswith("smoke: 3/4 done · 0 running · 0 pending · 1 failed") and lines[2].endswith("finished")


def test_progress_pickles_without_its_console():
    view = Progress("s", total=2)
    view.setup(total_num_samples=2)
    again = pickle.loads(pickle.dumps(view))  # Tune pickles callbacks with the run config (restore)
    assert (again.name, again.total, again._console) == ("s", 2, None)
    again.on_step_begin(0, trials("RUNNING"))  # before setup: silent, no error


def test_no_worker_logs_without_a_local_ray_session(tmp_path):
    assert collect_worker_logs(tmp_path / "logs") is None and not (tmp_path / "logs").exists()
