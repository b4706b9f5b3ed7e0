"""Seeds, derived generators and RNG snapshots: what makes a run repeatable and a resumed run exact.

* :func:`seed_everything` seeds Python, NumPy and torch (all devices) and asks torch for deterministic
  algorithms (``warn_only``: an op without a deterministic version warns instead of failing).
* :func:`derive_seed` / :func:`seeded_generator` give a stream per purpose from ``(seed, *keys)`` —
  e.g. the data order of epoch e from ``(seed, e)`` — independent of how much of any global RNG
  was consumed before.
* :func:`get_rng_state` / :func:`set_rng_state` snapshot the global RNGs as tensors and plain Python
  values, so a checkpoint holding them loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

_CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed ``random``, NumPy and torch; with ``deterministic``, prefer deterministic torch kernels.

    On CUDA, cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` set before its first use to be deterministic; it
    is set here if absent (effective only when CUDA has not been used yet in the process).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        os.environ.setdefault(_CUBLAS_ENV, ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for the stream named by ``(seed, *keys)``, well mixed (NumPy ``SeedSequence``)."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def seeded_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by :func:`derive_seed` ``(seed, *keys)``."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def get_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and, if initialised, CUDA) global RNGs."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a :func:`get_rng_state` snapshot (CUDA states only where CUDA is available)."""
    random.setstate(_as_tuples(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state((
        numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
        numpy_state["has_gauss"], numpy_state["gauss"],
    ))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants nested tuples; a serialisation round trip may have produced lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
