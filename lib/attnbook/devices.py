"""Where and in which precision to compute: the one device resolver and the one autocast helper."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; asking for CUDA without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but no CUDA GPU is available; use device='auto' or 'cpu'")
    return device


def training_processes(devices: int) -> int:
    """How many processes one training run uses (``TrainConfig.devices``): ``devices`` itself, or for ``0``
    every visible CUDA GPU (1 without CUDA: the single-process path)."""
    if devices < 0:
        raise ValueError(f"devices must be ≥ 0 (0 = every visible GPU), got {devices}")
    return devices or max(1, torch.cuda.device_count())


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``; ``None`` = full fp32."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("amp='fp16' needs a CUDA device; on CPU use amp='bf16' or 'off'")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing for ``None`` (see :func:`autocast_dtype`)."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
