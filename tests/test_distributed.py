"""attnbook.distributed: TrainConfig(devices=2) trains with DistributedDataParallel in 2 spawned CPU processes
(gloo) — the notebook's one call to :func:`attnbook.train.fit` — and must match one process with the same
global batch, keep the ranks identical, write one checkpoint and resume it in any world size.

Tolerance: 1e-5 (absolute) on every parameter and every history metric. The model has no dropout and no
batch norm, so the two runs differ only in floating-point summation order (gradients of 2 shards averaged
by DDP instead of one batch); the uneven last batch (101 = 6·16 + 5 samples: shards of 3 and 2) is
weighted so its gradient is the global batch mean's."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from attnbook import distributed
from attnbook.checkpoints import CHECKPOINT_FILE, CHECKSUM_FILE, HISTORY_FILE
from attnbook.train import TrainConfig, cross_entropy, fit

TOL = 1e-5
CONFIG = TrainConfig(epochs=3, batch_size=16, lr=0.1, optimizer="sgd", scheduler="cosine", device="cpu",
                     progress=False, eval_batch_size=64)
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr")


class Quadrants(Dataset):
    """``n`` random 8×8 images; the label is the brightest quadrant (4 classes)."""

    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, 8, 8, generator=generator)
        self.labels = self.images.mean(1).unfold(1, 4, 4).unfold(2, 4, 4).mean((-1, -2)).flatten(1).argmax(1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


class Net(nn.Module):
    """conv-ReLU-conv-ReLU-GAP-linear: no dropout, no batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(images).mean((2, 3)))


class StopAfter:
    """An objective that raises on its ``calls``-th call in each process (a run killed mid-epoch)."""

    def __init__(self, calls: int) -> None:
        self.calls, self.seen = calls, 0

    def __call__(self, model: nn.Module, batch):
        self.seen += 1
        if self.seen >= self.calls:
            raise RuntimeError("interrupted")
        return cross_entropy(model, batch)


def _model() -> Net:
    torch.manual_seed(0)
    return Net()


def _data() -> tuple[Quadrants, dict[str, Quadrants]]:
    return Quadrants(101, 0), {"test": Quadrants(40, 1)}


def _params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _assert_close(history, reference) -> None:
    assert len(history) == len(reference)
    for row, ref in zip(history, reference):
        assert row["epoch"] == ref["epoch"]
        for key in METRICS:
            assert abs(row[key] - ref[key]) <= TOL, (row["epoch"], key, row[key], ref[key])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process, and 2 DDP processes with a checkpoint folder, on the same data and global batch."""
    folder = tmp_path_factory.mktemp("ddp")
    train_data, eval_data = _data()
    single = _model()
    single_history = fit(single, train_data, CONFIG, eval_data=eval_data)
    ddp = _model()
    ddp_history = fit(ddp, train_data, _devices(2), eval_data=eval_data,
                      checkpoint_dir=folder / "ckpt")
    return {"single": (single, single_history), "ddp": (ddp, ddp_history, dict(distributed.LAST_REPORT)),
            "folder": folder}


def _devices(n: int) -> TrainConfig:
    return TrainConfig(**{**CONFIG.__dict__, "devices": n})


def test_shards_cover_each_global_batch_once_with_weights_summing_to_the_world():
    order = list(range(21))
    samplers = [distributed.ShardedBatchSampler(order, 8, 3, rank) for rank in range(3)]
    for step in range(3):
        parts = [s.batches[step] for s in samplers if s.real[step]]
        assert sum(parts, []) == order[8 * step:8 * step + 8]
        assert sum(s.weights[step] for s in samplers) == pytest.approx(3.0)
    tiny = [distributed.ShardedBatchSampler([0, 1, 2, 3, 4], 4, 3, rank) for rank in range(3)]
    assert [t.batches[1] for t in tiny] == [[4], [4], [4]] and [t.real[1] for t in tiny] == [True, False, False]
    assert [t.weights[1] for t in tiny] == [3.0, 0.0, 0.0]  # the stand-ins on ranks 1, 2 weigh nothing


def test_two_ddp_processes_match_one_process(runs):
    single, single_history = runs["single"]
    ddp, ddp_history, report = runs["ddp"]
    assert report == {"world_size": 2, "backend": "gloo", "param_spread": 0.0}  # ranks bit-identical
    assert (_params(ddp) - _params(single)).abs().max().item() <= TOL
    _assert_close(ddp_history, single_history)
    assert (_params(ddp) - _params(_model())).abs().max().item() > 100 * TOL  # training moved the parameters
    assert sorted(p.name for p in (runs["folder"] / "ckpt").iterdir()) == sorted(
        [CHECKPOINT_FILE, CHECKSUM_FILE, HISTORY_FILE])  # one checkpoint, by rank 0


def test_an_interrupted_ddp_run_resumes_in_any_world_size(runs, tmp_path):
    _, single_history = runs["single"]
    ddp, ddp_history, _ = runs["ddp"]
    train_data, eval_data = _data()
    steps = -(-len(train_data) // CONFIG.batch_size)  # 7 per epoch
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Exception, match="interrupted"):
        fit(_model(), train_data, _devices(2), objective=StopAfter(2 * steps + 3), eval_data=eval_data,
            checkpoint_dir=interrupted)
    assert [row["epoch"] for row in torch.load(interrupted / CHECKPOINT_FILE, weights_only=True)["history"]] == [1, 2]
    shutil.copytree(interrupted, tmp_path / "copy")

    resumed = _model()
    history = fit(resumed, train_data, _devices(2), eval_data=eval_data, checkpoint_dir=interrupted)
    assert torch.equal(_params(resumed), _params(ddp))  # resumed in the same world size: bit-identical
    timeless = [[{k: v for k, v in row.items() if k != "seconds"} for row in h] for h in (history, ddp_history)]
    assert timeless[0] == timeless[1]  # every metric of every epoch, exactly
    _assert_close(history, ddp_history)

    alone = _model()
    history = fit(alone, train_data, _devices(1), eval_data=eval_data, checkpoint_dir=tmp_path / "copy")
    assert (_params(alone) - _params(ddp)).abs().max().item() <= TOL  # written by 2 processes, resumed by 1
    _assert_close(history, single_history)


def test_a_single_process_checkpoint_resumes_in_two_processes(runs, tmp_path):
    single, single_history = runs["single"]
    train_data, eval_data = _data()
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(_model(), train_data, _devices(1), objective=StopAfter(7 + 2), eval_data=eval_data,
            checkpoint_dir=tmp_path / "one")
    model = _model()
    history = fit(model, train_data, _devices(2), eval_data=eval_data, checkpoint_dir=tmp_path / "one")
    assert (_params(model) - _params(single)).abs().max().item() <= TOL
    _assert_close(history, single_history)


def test_sync_batchnorm_on_cpu_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="sync_batchnorm needs CUDA"):  # before any process is spawned
        fit(_model(), Quadrants(8, 0), TrainConfig(**{**CONFIG.__dict__, "devices": 2, "sync_batchnorm": True,
                                                      "epochs": 1}))


TORCHRUN_RANK = """
import json, sys
sys.path.insert(0, sys.argv[1])
from test_distributed import _data, _devices, _model, _params
from attnbook.train import fit
train_data, eval_data = _data()
model = _model()
history = fit(model, train_data, _devices(2), eval_data=eval_data, checkpoint_dir=sys.argv[2])
print(json.dumps({"test_acc": history[-1]["test_acc"], "params": _params(model).tolist()}))
"""


def test_the_same_call_under_torchrun_runs_in_place(runs, tmp_path):
    """Two processes started as `torchrun --nproc_per_node 2` starts them (its environment variables): each runs
    its rank in place, no spawning, and ends where the spawned run ended."""
    import json
    import os
    import subprocess
    import sys

    port = str(distributed._free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", TORCHRUN_RANK, str(Path(__file__).parent),
                                       str(tmp_path / "ckpt")], env=env, stdout=subprocess.PIPE, text=True))
    outputs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    ddp, ddp_history, _ = runs["ddp"]
    for out in outputs:
        assert (torch.tensor(out["params"]) - _params(ddp)).abs().max().item() <= TOL
        assert abs(out["test_acc"] - ddp_history[-1]["test_acc"]) <= TOL
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == sorted([CHECKPOINT_FILE, CHECKSUM_FILE,
                                                                            HISTORY_FILE])
