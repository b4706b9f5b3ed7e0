"""Training checkpoints: written atomically every epoch, checksummed, resumed only by the run they belong to.

A checkpoint stores the trainer's state (model, optimiser, scheduler, RNG states), the history so far
and a *fingerprint* of what must match to resume it (:func:`attnbook.train.fingerprint`: the training
config, the model, the code version and the caller's context — chapter config, data spec). Beside
``checkpoint.pt`` lies ``checkpoint.pt.sha256``, written after it; loading verifies it first, because
``torch.load`` does not check the zip CRCs and would resume silently from a damaged file.

* fingerprint differs → :class:`CheckpointMismatchError` listing the differences;
* checksum missing or wrong, or the file unreadable → :class:`CheckpointCorruptError`, one line naming
  the file and the fix. A corrupt checkpoint is never resumed.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from attnbook.files import atomic_write, atomic_write_text

CHECKPOINT_FILE = "checkpoint.pt"
CHECKSUM_FILE = CHECKPOINT_FILE + ".sha256"
HISTORY_FILE = "history.json"
FIX = "rerun with `attnbook run … --force` (or delete {directory}) to retrain from scratch"


class CheckpointMismatchError(ValueError):
    """A checkpoint written by a different run (config, model, data or code) than the one resuming it."""


class CheckpointCorruptError(RuntimeError):
    """A checkpoint whose checksum is missing or wrong, or that cannot be read: it is never resumed."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        super().__init__(f"checkpoint {self.path} is corrupt ({reason}); it cannot be resumed: "
                         + FIX.format(directory=self.path.parent))


def differences(stored: Any, current: Any, path: str = "") -> list[str]:
    """Dotted paths where two fingerprints differ, each with both values."""
    if isinstance(stored, dict) and isinstance(current, dict):
        return [line for key in sorted(set(stored) | set(current), key=str)
                for line in differences(stored.get(key), current.get(key), f"{path}.{key}" if path else key)]
    return [] if stored == current else [f"{path}: checkpoint {stored!r}, now {current!r}"]


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _read_verified(path: Path) -> bytes:
    """The checkpoint's bytes after checking them against ``<file>.sha256``."""
    checksum = path.with_name(CHECKSUM_FILE)
    try:
        data = path.read_bytes()
        expected = checksum.read_text().split()[0] if checksum.is_file() else None
    except (OSError, IndexError) as err:
        raise CheckpointCorruptError(path, f"unreadable: {err}") from None
    if expected is None:
        raise CheckpointCorruptError(path, f"no checksum file {checksum.name}")
    if sha256(data) != expected:
        raise CheckpointCorruptError(path, f"SHA-256 differs from {checksum.name}")
    return data


def load_checkpoint(directory: Path, current: dict[str, Any]) -> dict[str, Any] | None:
    """The state saved in ``directory`` (``None`` if there is none) after checking its checksum and
    its fingerprint against ``current``."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    data = _read_verified(path)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        stored = json.loads(state["fingerprint"])
    except Exception as err:  # any failure to read it means it cannot be resumed
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise CheckpointCorruptError(path, f"torch.load failed: {first}") from None
    found = differences(stored, current)
    if found:
        shown = "\n  ".join(found[:8]) + ("\n  …" if len(found) > 8 else "")
        raise CheckpointMismatchError(
            f"checkpoint {path} belongs to a different run ({len(found)} differences): it is not resumed; "
            f"{FIX.format(directory=path.parent)}, or use another checkpoint_dir:\n  {shown}"
        )
    return state


def save_checkpoint(directory: Path, state: dict[str, Any], current: dict[str, Any], history: list) -> None:
    """Write the checkpoint, then its SHA-256, then ``history.json``, each atomically (temp file + ``os.replace``).

    Killed between the checkpoint and its checksum, the next load finds them disagreeing and refuses
    the checkpoint as corrupt (never resumes it)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {**state, "fingerprint": json.dumps(current), "epoch": len(history), "history": history}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    atomic_write(directory / CHECKPOINT_FILE, lambda handle: handle.write(data))
    atomic_write_text(directory / CHECKSUM_FILE, f"{sha256(data)}  {CHECKPOINT_FILE}\n")
    atomic_write(directory / HISTORY_FILE, lambda handle: handle.write(json.dumps(history, indent=1).encode()))

