"""Tests for attnbook.models.weights: offline cache lookup, hash verification, download only if allowed.

Every test points TORCH_HOME at tmp_path; the only "download" is a monkeypatched stand-in (no network).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from attnbook.models import weights
from attnbook.models.weights import (
    ALLOW_DOWNLOAD_ENV,
    WeightsCorrupt,
    WeightsUnavailable,
    cache_path,
    load_state_dict,
    pretrained_state_dict,
    weights_url,
)

RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(ALLOW_DOWNLOAD_ENV, raising=False)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    return checkpoints


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def _state_dict() -> dict[str, torch.Tensor]:
    return {"conv.weight": torch.randn(4, 3, 3, 3), "bn.running_mean": torch.randn(4)}


def _save_hashed(directory: Path, stem: str, state: dict[str, torch.Tensor]) -> Path:
    """Save ``state`` as ``<stem>-<first 8 hex of its sha256>.pth``, torchvision's naming."""
    staged = directory / "staged"
    torch.save(state, staged)
    path = directory / f"{stem}-{hashlib.sha256(staged.read_bytes()).hexdigest()[:8]}.pth"
    staged.rename(path)
    return path


def test_urls_come_from_torchvision_weights_api() -> None:
    assert weights_url("resnet18") == RESNET18_URL
    assert weights_url("resnet50", "IMAGENET1K_V2").endswith("resnet50-11ad3fa6.pth")
    with pytest.raises(ValueError, match=r"IMAGENET1K_V9.*IMAGENET1K_V1"):
        weights_url("resnet18", "IMAGENET1K_V9")


def test_cache_path_follows_torch_home(torch_home: Path) -> None:
    assert cache_path(RESNET18_URL) == torch_home / "resnet18-f37072fd.pth"


def test_correct_hash_loads_the_state_dict(torch_home: Path, no_network: None) -> None:
    state = _state_dict()
    path = _save_hashed(torch_home, "tiny", state)
    loaded = load_state_dict(f"https://example.invalid/models/{path.name}")
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[key], state[key]) for key in state)


def test_wrong_hash_under_the_real_name_is_refused(torch_home: Path, no_network: None) -> None:
    torch.save(_state_dict(), torch_home / "resnet18-f37072fd.pth")  # content cannot hash to f37072fd
    with pytest.raises(WeightsCorrupt, match=r"resnet18-f37072fd\.pth.*name promises f37072fd.*delete it"):
        pretrained_state_dict("resnet18")


def test_missing_file_names_file_place_and_fetch_command(torch_home: Path, no_network: None) -> None:
    with pytest.raises(WeightsUnavailable) as caught:
        pretrained_state_dict("resnet18")
    message = str(caught.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(torch_home / "resnet18-f37072fd.pth") in message
    assert f"torch.hub.load_state_dict_from_url('{RESNET18_URL}', check_hash=True)" in message
    assert "allow_download=True" in message and f"{ALLOW_DOWNLOAD_ENV}=1" in message


def test_explicit_false_wins_over_the_environment(torch_home: Path, no_network: None, monkeypatch) -> None:
    monkeypatch.setenv(ALLOW_DOWNLOAD_ENV, "1")
    with pytest.raises(WeightsUnavailable):
        load_state_dict(RESNET18_URL, allow_download=False)


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_allowed_download_goes_to_the_cache_and_is_verified(torch_home: Path, tmp_path: Path, monkeypatch,
                                                            how: str) -> None:
    source = _save_hashed(tmp_path, "fake", _state_dict())
    requests = []

    def fake_download(url: str, dst: str, hash_prefix: str | None = None, **kwargs) -> None:
        requests.append((url, hash_prefix))
        Path(dst).write_bytes(source.read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    url = f"https://example.invalid/{source.name}"
    if how == "environment":
        monkeypatch.setenv(ALLOW_DOWNLOAD_ENV, "1")
    loaded = load_state_dict(url, allow_download=True if how == "argument" else None)
    assert requests == [(url, source.name.split("-")[1].split(".")[0])]
    assert (torch_home / source.name).is_file() and "conv.weight" in loaded


def test_unhashed_file_name_cannot_be_verified(torch_home: Path) -> None:
    torch.save(_state_dict(), torch_home / "plain.pth")
    with pytest.raises(ValueError, match="cannot be verified"):
        load_state_dict("https://example.invalid/plain.pth")


def test_weights_only_load_refuses_pickled_code(torch_home: Path) -> None:
    path = _save_hashed(torch_home, "code", {"fn": weights.verify})  # a pickled function reference
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        load_state_dict(f"https://example.invalid/{path.name}")
