"""Pretrained ImageNet weights from torchvision's cache — offline first, verified, never a surprise download.

``pretrained=True`` in :func:`attnbook.models.backbones.build_backbone` comes here. The file is looked
up where torchvision itself caches it (``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/…``,
default ``~/.cache/torch/hub/checkpoints``). A missing file raises :class:`WeightsUnavailable` with the
exact command that fetches it on a connected machine; downloading here happens only when explicitly
allowed (``allow_download=True`` or the environment variable ``ATTNBOOK_ALLOW_DOWNLOAD=1``).

Every load checks the file's SHA-256 against the prefix torchvision embeds in the file name
(``resnet18-f37072fd.pth`` → ``f37072fd``); a mismatch raises :class:`WeightsCorrupt` and the file is
not used. Files are read with ``torch.load(..., weights_only=True)`` (no code execution).
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
from torchvision.models import get_model_weights

ALLOW_DOWNLOAD_ENV = "ATTNBOOK_ALLOW_DOWNLOAD"
DEFAULT_WEIGHTS = "IMAGENET1K_V1"  # the original ImageNet weights, the papers' era (see backbones.py)
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.[A-Za-z]+$")


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are not in the local cache (and downloading was not allowed)."""


class WeightsCorrupt(WeightsUnavailable):
    """A cached weights file does not match the hash in its name; it was not used."""


def weights_url(arch: str, weights: str = DEFAULT_WEIGHTS) -> str:
    """The download URL of torchvision's ``weights`` entry (e.g. ``"IMAGENET1K_V1"``) for ``arch``."""
    entries = get_model_weights(arch)
    try:
        return entries[weights].url
    except KeyError:
        valid = [entry.name for entry in entries]
        raise ValueError(f"{arch} has no torchvision weights {weights!r}; valid: {valid}") from None


def cache_path(url: str) -> Path:
    """Where torchvision caches the file of ``url``: ``torch.hub.get_dir()/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def hash_prefix(path: Path) -> str:
    """The SHA-256 prefix torchvision embeds in a weights file name (``resnet18-f37072fd.pth``)."""
    match = _HASH_IN_NAME.search(path.name)
    if match is None:
        raise ValueError(f"{path.name!r} carries no '-<sha256 prefix>.<ext>' hash; it cannot be verified")
    return match.group(1)


def verify(path: Path) -> None:
    """Raise :class:`WeightsCorrupt` unless the SHA-256 of ``path`` starts with the prefix in its name."""
    expected = hash_prefix(path)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    actual = digest.hexdigest()
    if not actual.startswith(expected):
        raise WeightsCorrupt(
            f"{path} is corrupt or not the published file: its SHA-256 starts with {actual[:len(expected)]}, "
            f"the name promises {expected}. It was not used; delete it and fetch it again."
        )


def download_allowed(allow_download: bool | None = None) -> bool:
    """An explicit ``allow_download`` wins; ``None`` reads ``ATTNBOOK_ALLOW_DOWNLOAD=1`` (off by default)."""
    if allow_download is not None:
        return allow_download
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "") == "1"


def _missing_message(url: str, path: Path) -> str:
    fetch = f"python -c \"import torch.hub; torch.hub.load_state_dict_from_url('{url}', check_hash=True)\""
    return (
        f"pretrained weights {path.name} are not in the local cache: expected at {path}.\n"
        f"On a machine with internet access run\n    {fetch}\n"
        f"then copy ~/.cache/torch/hub/checkpoints/{path.name} (or $TORCH_HOME/hub/checkpoints/…) "
        f"to {path}.\n"
        f"To download here instead, pass allow_download=True or set {ALLOW_DOWNLOAD_ENV}=1; "
        "or use pretrained=False."
    )


def load_state_dict(url: str, *, allow_download: bool | None = None) -> dict[str, torch.Tensor]:
    """The verified state dict of the weights file at ``url``, from the cache (download only if allowed)."""
    path = cache_path(url)
    if not path.is_file():
        if not download_allowed(allow_download):
            raise WeightsUnavailable(_missing_message(url, path))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix(path))
    verify(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def pretrained_state_dict(
    arch: str, weights: str = DEFAULT_WEIGHTS, *, allow_download: bool | None = None
) -> dict[str, torch.Tensor]:
    """The torchvision state dict of ``arch`` (e.g. ``"resnet50"``) with weights ``weights``, verified."""
    return load_state_dict(weights_url(arch, weights), allow_download=allow_download)
