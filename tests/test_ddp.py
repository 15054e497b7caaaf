"""2-process DDP on CPU (gloo): gradients are synchronised and match a single worker."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sasi.config import from_dict
from sasi.train.config import SasiConfig
from sasi.train.loop import Hooks, Trainer

STEPS = 3


def _config(dataset_root: str) -> SasiConfig:
    return from_dict(SasiConfig, {
        "data": {"dataset": dataset_root, "shots": 2, "patch": 16},
        "model": {"channels": [4, 6, 8]},
        "train": {"iterations": STEPS, "eval_every": 0, "batch_size": 2, "device": "cpu"},
    })


def _steps(trainer: Trainer) -> dict[str, torch.Tensor]:
    for _ in range(STEPS):
        trainer.supervised_step()
    return {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}


def _worker(rank: int, root: str, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    ddp = lambda m: torch.nn.parallel.DistributedDataParallel(m, find_unused_parameters=True)
    # Hooks.rank seeds the crop sampler. With their own seeds the ranks see different crops, so their
    # weights agree only if gradients are all-reduced. With equal seeds both ranks see the same crops and
    # the averaged gradient must equal the single-worker one.
    for seeds in ("own", "same"):
        hooks = Hooks(rank=rank if seeds == "own" else 0, world_size=2, prepare_model=ddp)
        torch.save(_steps(Trainer(_config(root), hooks, progress=False)), f"{out}/{seeds}{rank}.pt")
    dist.destroy_process_group()


def test_ddp_gradients_are_synchronised_and_match_one_worker(tiny_dataset, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(str(tiny_dataset.root), port, str(tmp_path)), nprocs=2, join=True)
    own = [torch.load(tmp_path / f"own{r}.pt") for r in (0, 1)]
    same = [torch.load(tmp_path / f"same{r}.pt") for r in (0, 1)]
    single = _steps(Trainer(_config(str(tiny_dataset.root)), progress=False))
    unsynced = _steps(Trainer(_config(str(tiny_dataset.root)), Hooks(rank=1), progress=False))
    for name, value in single.items():
        torch.testing.assert_close(own[0][name], own[1][name], atol=1e-6, rtol=1e-5)  # replicas stay in sync
        torch.testing.assert_close(same[0][name], value, atol=1e-5, rtol=1e-4)  # = one worker on the same data
    # without synchronisation the two data streams would have produced different weights
    assert any(not torch.allclose(single[k], unsynced[k], atol=1e-4) for k in single)
