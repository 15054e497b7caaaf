"""Ray orchestration of SaSi: distributed training, Tune searches, ablation suites, MLflow tracking.

Modules (one job each): :mod:`.runtime` (connect to Ray, resources), :mod:`.train` (Ray Train),
:mod:`.tracking` (MLflow), :mod:`.search_space` (YAML → Optuna), :mod:`.trial` (the Tune trial driver),
:mod:`.tune` (searches), :mod:`.searcher` (their Optuna studies), :mod:`.ablate` (grid suites), :mod:`.evaluation` (test scoring),
:mod:`.summary` (mean ± CI tables), :mod:`.figures` (PNG plots), :mod:`.report` (shareable suite
reports).
"""
