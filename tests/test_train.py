"""Tests for attnbook.train: the loop's determinism, exact resume after SIGKILL, objectives, freezing, caching.

Everything runs on CPU with a tiny conv net on 16×16 random images.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from attnbook.checkpoints import (
    CHECKPOINT_FILE,
    CHECKSUM_FILE,
    HISTORY_FILE,
    CheckpointCorruptError,
    CheckpointMismatchError,
)
from attnbook.models.heads import GAPHead
from attnbook.seeding import seed_everything, seeded_generator
from attnbook.train import (
    FeatureDataset,
    NonFiniteLossError,
    StepOutput,
    TrainConfig,
    autocast_dtype,
    cache_features,
    correct,
    cross_entropy,
    evaluate,
    fit,
    freeze,
    multilabel_soft_margin,
    predict,
    unfreeze,
)

CONFIG = TrainConfig(epochs=3, batch_size=16, lr=0.05, optimizer="sgd", scheduler="cosine", device="cpu",
                     progress=False)


class Images(Dataset):
    """``n`` random 16×16 images; the label says which quadrant is brightest (learnable, 4 classes)."""

    def __init__(self, n: int = 256, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, 16, 16, generator=generator)
        quadrants = self.images.mean(1).unfold(1, 8, 8).unfold(2, 8, 8).mean((-1, -2)).flatten(1)  # [n, 4]
        self.labels = quadrants.argmax(1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index], "index": torch.tensor(index)}


class TinyNet(nn.Module):
    """conv-BN-ReLU-conv-ReLU backbone + GAP head with dropout (so the RNG state matters)."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU())
        self.head = GAPHead(8, num_classes, dropout=0.2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def _seeded_net(seed: int = 0) -> TinyNet:
    seed_everything(seed)
    return TinyNet()


def _without_time(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "seconds"} for row in history]


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


@pytest.fixture(autouse=True)
def _restore_deterministic_flag():
    """fit() turns on deterministic algorithms globally; give the next test the flag it had."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


# --- configuration ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "message"), [
    ({"optimizer": "rmsprop"}, r"optimizer='rmsprop' is not one of \('sgd', 'adam', 'adamw'\)"),
    ({"amp": "fp8"}, "amp='fp8'"),
    ({"epochs": 0}, "epochs must be ≥ 1"),
    ({"lr": 0.0}, "positive"),
    ({"scheduler": "step"}, "needs milestones"),
])
def test_config_rejects_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_autocast_dtype_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("off", cuda) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="needs a CUDA device"):
        autocast_dtype("fp16", cpu)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert autocast_dtype("auto", cuda) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert autocast_dtype("auto", cuda) is torch.float16


# --- determinism and the history --------------------------------------------------------------------

def test_same_seed_gives_identical_metrics_and_weights() -> None:
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 2})
    runs = []
    for _ in range(2):
        model = _seeded_net()
        runs.append((fit(model, Images(128), config, eval_data={"val": Images(64, seed=1)}), model))
    assert _without_time(runs[0][0]) == _without_time(runs[1][0])
    _assert_same_state(runs[0][1], runs[1][1])
    other = fit(_seeded_net(), Images(128), TrainConfig(**{**config.__dict__, "seed": 1}))
    assert other[0]["train_loss"] != runs[0][0][0]["train_loss"]


def test_data_order_is_drawn_from_seed_and_epoch() -> None:
    seen: list[list[int]] = []

    def recording(model: nn.Module, batch: dict) -> StepOutput:
        if model.training:
            seen.append(batch["index"].tolist())
        return cross_entropy(model, batch)

    torch.rand(1000)  # consuming the global RNG before fit must not matter
    fit(_seeded_net(), Images(40), TrainConfig(epochs=2, batch_size=16, seed=5, progress=False, device="cpu"),
        objective=recording)
    per_epoch = [sum(seen[:3], []), sum(seen[3:], [])]  # 40 samples = 16 + 16 + 8
    for epoch, order in enumerate(per_epoch, start=1):
        assert order == torch.randperm(40, generator=seeded_generator(5, epoch)).tolist()
    assert per_epoch[0] != per_epoch[1]


def test_history_rows_and_files(tmp_path: Path) -> None:
    history = fit(_seeded_net(), Images(64), TrainConfig(**{**CONFIG.__dict__, "epochs": 2}),
                  eval_data={"val": Images(32, seed=1), "test": Images(32, seed=2)}, checkpoint_dir=tmp_path)
    assert [row["epoch"] for row in history] == [1, 2]
    assert set(history[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                               "lr", "seconds"}
    assert all(0 <= row[key] <= 1 for row in history for key in row if key.endswith("_acc"))
    assert json.loads((tmp_path / HISTORY_FILE).read_text()) == history
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert state["epoch"] == 2 and state["history"] == history
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE, CHECKSUM_FILE, HISTORY_FILE]  # no temp files


def test_learning_rate_schedules() -> None:
    base = {**CONFIG.__dict__, "epochs": 4}
    cosine = fit(_seeded_net(), Images(16), TrainConfig(**base))
    expected = [0.5 * 0.05 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert [row["lr"] for row in cosine] == pytest.approx(expected)
    step = fit(_seeded_net(), Images(16), TrainConfig(**{**base, "scheduler": "step", "milestones": (1, 3)}))
    assert [row["lr"] for row in step] == pytest.approx([0.05, 0.005, 0.005, 0.0005])


def test_objective_logs_are_sample_weighted_epoch_means() -> None:
    def logging(model: nn.Module, batch: dict) -> StepOutput:
        out = cross_entropy(model, batch)
        return StepOutput(out.loss, out.logits, {"batch_size": float(len(batch["label"]))})

    history = fit(_seeded_net(), Images(10), TrainConfig(epochs=1, batch_size=4, progress=False, device="cpu"),
                  objective=logging, eval_data={"val": Images(10)})
    assert history[0]["train_batch_size"] == pytest.approx((4 * 4 + 4 * 4 + 2 * 2) / 10)
    assert history[0]["val_batch_size"] == 10  # one eval batch of 10


# --- checkpoints and resume -------------------------------------------------------------------------

class _StallingObjective:
    """Cross-entropy that, at training call ``stall_at``, writes ``marker`` and hangs (to be killed)."""

    def __init__(self, stall_at: int, marker: str) -> None:
        self.stall_at, self.marker, self.calls = stall_at, Path(marker), 0

    def __call__(self, model: nn.Module, batch: dict) -> StepOutput:
        if model.training:
            self.calls += 1
            if self.calls == self.stall_at:
                self.marker.touch()
                time.sleep(120)
        return cross_entropy(model, batch)


def _child(checkpoint_dir: str, marker: str) -> None:
    """Run in a subprocess: train, hanging in epoch 2 at step 8 of 16."""
    torch.set_num_threads(1)
    fit(_seeded_net(), Images(), CONFIG, objective=_StallingObjective(16 + 8, marker),
        eval_data={"val": Images(64, seed=1)}, checkpoint_dir=checkpoint_dir)


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    checkpoint_dir, marker = tmp_path / "run", tmp_path / "in_epoch_2"
    code = "import runpy, sys; runpy.run_path(sys.argv[1])['_child'](sys.argv[2], sys.argv[3])"
    child = subprocess.Popen([sys.executable, "-c", code, __file__, str(checkpoint_dir), str(marker)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "training subprocess died"
            assert time.monotonic() < deadline, "training subprocess never reached epoch 2"
            time.sleep(0.05)
        assert torch.load(checkpoint_dir / CHECKPOINT_FILE, weights_only=True)["epoch"] == 1
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    resumed_model = TinyNet()  # its own init is overwritten by the checkpoint
    resumed = fit(resumed_model, Images(), CONFIG, eval_data={"val": Images(64, seed=1)},
                  checkpoint_dir=checkpoint_dir)
    reference_model = _seeded_net()
    reference = fit(reference_model, Images(), CONFIG, eval_data={"val": Images(64, seed=1)})
    assert _without_time(resumed) == _without_time(reference)
    _assert_same_state(resumed_model, reference_model)


def test_finished_run_is_loaded_not_retrained(tmp_path: Path) -> None:
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 1})
    trained = _seeded_net()
    history = fit(trained, Images(32), config, checkpoint_dir=tmp_path)

    def forbidden(model: nn.Module, batch: dict) -> StepOutput:
        raise AssertionError("a finished run must not train again")

    again = TinyNet()
    assert fit(again, Images(32), config, objective=forbidden, checkpoint_dir=tmp_path) == history
    _assert_same_state(again, trained)


def test_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 1})
    fit(_seeded_net(), Images(32), config, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r"config\.lr: checkpoint 0\.05, now 0\.01"):
        fit(_seeded_net(), Images(32), TrainConfig(**{**config.__dict__, "lr": 0.01}), checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r"head\.fc\.weight: checkpoint \[4, 8\], now \[3, 8\]"):
        fit(TinyNet(num_classes=3), Images(32), config, checkpoint_dir=tmp_path)


def test_checkpoint_of_another_context_or_code_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from attnbook import train

    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 1})
    fit(_seeded_net(), Images(32), config, checkpoint_dir=tmp_path, context={"data": {"p_bias": 0.9}})
    with pytest.raises(CheckpointMismatchError, match=r"context\.data\.p_bias: checkpoint 0\.9, now 0\.5"):
        fit(_seeded_net(), Images(32), config, checkpoint_dir=tmp_path, context={"data": {"p_bias": 0.5}})
    with pytest.raises(CheckpointMismatchError, match=r"context: checkpoint \{'data'.*now None"):
        fit(_seeded_net(), Images(32), config, checkpoint_dir=tmp_path)
    monkeypatch.setattr(train, "code_version", lambda: "0123456789ab")
    with pytest.raises(CheckpointMismatchError, match=r"code_version: checkpoint '[0-9a-f]{12}', now '0123456789ab'"):
        fit(_seeded_net(), Images(32), config, checkpoint_dir=tmp_path, context={"data": {"p_bias": 0.9}})


def test_testbed_checkpoints_are_tied_to_config_and_data(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from attnbook.chapters.testbed import pipeline
    from attnbook.chapters.testbed.config import CHAPTER
    from attnbook.data.spec import spec_for

    contexts = {}
    for p_bias in (0.9, 0.5):
        config = CHAPTER.resolve("smoke", 0, p_bias=p_bias)
        bench = SimpleNamespace(spec=spec_for(config.preset, num_classes=4, train_per_class=1, test_per_class=1,
                                              resolution=64, p_bias=p_bias))
        contexts[p_bias] = pipeline.checkpoint_context(config, bench, {"code_version": "x"})
    train_config = TrainConfig(**{**CONFIG.__dict__, "epochs": 1})
    fit(_seeded_net(), Images(32), train_config, checkpoint_dir=tmp_path, context=contexts[0.9])
    with pytest.raises(CheckpointMismatchError, match=r"context\.config\.p_bias: checkpoint 0\.9, now 0\.5"):
        fit(_seeded_net(), Images(32), train_config, checkpoint_dir=tmp_path, context=contexts[0.5])


def _one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    message = str(err.value)
    assert len(message.splitlines()) == 1 and str(path) in message and "--force" in message


def test_a_damaged_checkpoint_is_never_resumed(tmp_path: Path) -> None:
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 1})
    fit(_seeded_net(), Images(32), config, checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    assert (tmp_path / CHECKSUM_FILE).read_text().split()[1] == CHECKPOINT_FILE
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = np.full(1024, 0.5, dtype=np.float32).tobytes()  # finite floats: torch.load passes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError, match="SHA-256 differs") as err:
        fit(_seeded_net(), Images(32), config, checkpoint_dir=tmp_path)
    _one_line_naming(err, path)


def test_a_truncated_or_unverifiable_checkpoint_says_which_file_and_the_fix(tmp_path: Path) -> None:
    from attnbook.checkpoints import load_checkpoint, sha256

    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 1})
    fit(_seeded_net(), Images(32), config, checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    truncated = path.read_bytes()[:1000]
    path.write_bytes(truncated)
    (tmp_path / CHECKSUM_FILE).write_text(f"{sha256(truncated)}  {CHECKPOINT_FILE}\n")  # a matching checksum
    with pytest.raises(CheckpointCorruptError, match="torch.load failed") as err:
        load_checkpoint(tmp_path, {})
    _one_line_naming(err, path)
    (tmp_path / CHECKSUM_FILE).unlink()
    with pytest.raises(CheckpointCorruptError, match="no checksum file") as err:
        load_checkpoint(tmp_path, {})
    _one_line_naming(err, path)


# --- failures, optimisation details -----------------------------------------------------------------

def test_nonfinite_loss_stops_naming_epoch_and_step() -> None:
    calls = []

    def exploding(model: nn.Module, batch: dict) -> StepOutput:
        out = cross_entropy(model, batch)
        calls.append(1)
        return StepOutput(out.loss * (math.nan if len(calls) == 7 else 1.0), out.logits)

    model = _seeded_net()
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 3") as caught:
        fit(model, Images(64), TrainConfig(epochs=3, batch_size=16, progress=False, device="cpu"), objective=exploding)
    assert (caught.value.epoch, caught.value.step) == (2, 3) and len(calls) == 7
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN step was never applied


def test_grad_clip_bounds_the_update() -> None:
    model = _seeded_net()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    config = TrainConfig(epochs=1, batch_size=16, lr=1.0, optimizer="sgd", momentum=0.0, grad_clip=1e-3,
                         progress=False, device="cpu")
    fit(model, Images(16), config)  # one step: Δθ = −lr · clipped gradient
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < torch.linalg.vector_norm(after - before).item() <= 1e-3 * (1 + 1e-4)


def test_param_groups_get_their_own_learning_rate() -> None:
    model = _seeded_net()
    backbone_before = [p.detach().clone() for p in model.backbone.parameters()]
    head_before = model.head.fc.weight.detach().clone()
    groups = [{"params": model.backbone.parameters(), "lr": 0.0}, {"params": model.head.parameters()}]
    fit(model, Images(32), TrainConfig(**{**CONFIG.__dict__, "epochs": 1}), trainable=groups)
    assert all(torch.equal(a, b) for a, b in zip(backbone_before, model.backbone.parameters()))
    assert not torch.equal(head_before, model.head.fc.weight)
    with pytest.raises(TypeError, match="not a mix"):
        fit(model, Images(32), CONFIG, trainable=[groups[1], next(model.head.parameters())])


def test_frozen_backbone_keeps_weights_and_batchnorm_statistics() -> None:
    model = _seeded_net()
    freeze(model.backbone)
    frozen = {key: value.clone() for key, value in model.backbone.state_dict().items()}
    head_before = model.head.fc.weight.detach().clone()
    fit(model, Images(64), TrainConfig(**{**CONFIG.__dict__, "epochs": 2}))
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, frozen[key]), key  # incl. running_mean/var, num_batches_tracked
    assert not torch.equal(head_before, model.head.fc.weight)
    model.train()
    assert not model.backbone.training and not model.backbone[1].training and model.head.training
    unfreeze(model.backbone)
    model.train()
    assert model.backbone[1].training and all(p.requires_grad for p in model.backbone.parameters())


def test_fit_refuses_a_model_with_nothing_to_train() -> None:
    model = freeze(_seeded_net())
    with pytest.raises(ValueError, match="nothing to train"):
        fit(model, Images(16), CONFIG)


# --- objectives, evaluation, prediction ---------------------------------------------------------------

def test_evaluate_and_predict_on_known_logits() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 2.0, 0.0]])
    labels = torch.tensor([0, 1, 2, 0])  # the last one is wrong: accuracy 3/4
    data = FeatureDataset({"features": logits, "label": labels})
    log_softmax = logits.numpy() - np.log(np.exp(logits.numpy()).sum(1, keepdims=True))
    expected_loss = -log_softmax[np.arange(4), labels.numpy()].mean()
    metrics = evaluate(nn.Identity(), data, batch_size=3)
    assert metrics["acc"] == pytest.approx(0.75) and metrics["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert torch.equal(predict(nn.Identity(), data, batch_size=3), logits)


def test_multilabel_objective_and_accuracy() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, -0.5]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    out = multilabel_soft_margin(nn.Identity(), {"features": logits, "label": labels})
    x, y = logits.numpy(), labels.numpy()
    expected = -(y * np.log(1 / (1 + np.exp(-x))) + (1 - y) * np.log(1 / (1 + np.exp(x)))).mean()
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert correct(logits, labels) == pytest.approx(2 / 3 + 2 / 3)  # per-sample fraction of labels right
    assert correct(torch.tensor([[0.3], [-0.2], [1.0]]), torch.tensor([1.0, 1.0, 0.0])) == 1  # one binary logit
    assert correct(torch.tensor([0.3, -0.2, 1.0]), torch.tensor([1, 0, 1])) == 3  # [B] logits, int labels
    assert correct(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 1  # argmax


def test_cache_features_then_train_a_head_on_them() -> None:
    model = _seeded_net()
    data = Images(20)
    cached = cache_features(model.backbone, data, batch_size=8)
    assert len(cached) == 20 and set(cached.tensors) == {"features", "label", "index"}
    assert cached.tensors["features"].shape == (20, 8, 8, 8) and model.backbone.training  # mode restored
    model.backbone.eval()
    with torch.no_grad():
        torch.testing.assert_close(cached.tensors["features"], model.backbone(data.images))
    assert torch.equal(cached.tensors["label"], data.labels)
    history = fit(model.head, cached, TrainConfig(epochs=1, batch_size=8, progress=False, device="cpu"))
    assert history[0]["train_loss"] > 0
    with pytest.raises(ValueError, match="same first dimension"):
        FeatureDataset({"features": torch.zeros(3, 1), "label": torch.zeros(2)})
