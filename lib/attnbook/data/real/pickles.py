"""Reading pickles that may hold data only — never code.

``pickle.load`` calls whatever callable a file names (``os.system``, ``builtins.exec`` …), so a crafted
"CIFAR batch" dropped into the data folder would run code when a loader opens it. :class:`DataUnpickler`
resolves only the globals a pickled dict of numpy arrays needs; anything else raises
:class:`ForbiddenGlobalError` before it is called. Lists, dicts, tuples, ``str``, ``bytes``, ``int``,
``float``, ``bool`` and ``None`` need no global at all.

The allow-list, checked by ``tests/data/real/test_pickles.py`` against pickles written by ``pickle.dump``:

- protocol 2 (the CIFAR files, written by Python 2): ``numpy.core.multiarray._reconstruct``,
  ``numpy.ndarray``, ``numpy.dtype`` — plus ``_codecs.encode`` when Python 3 writes ``bytes`` at protocol
  2 (``_codecs.encode(text, "latin1")``; any other codec is refused);
- protocols 3–4: the same numpy names (``numpy._core.multiarray`` under numpy ≥ 2);
- protocol 5: ``numpy._core.numeric._frombuffer`` and ``numpy.dtype``.
"""
from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any, BinaryIO

_NUMPY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
})
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = _NUMPY_GLOBALS | {("_codecs", "encode")}


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle names a global outside :data:`ALLOWED_GLOBALS` (it would run code, not load data)."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"refused global {module}.{name}")
        self.module, self.name = module, name


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``: latin-1 only."""
    if encoding != "latin1":
        raise ForbiddenGlobalError("_codecs", f"encode(…, {encoding!r})")
    return codecs.encode(text, "latin1")


def _numpy_global(module: str, name: str) -> Any:
    """The numpy object ``module.name``; ``numpy.core`` names resolve to ``numpy._core`` under numpy ≥ 2
    (without the deprecation warning of importing ``numpy.core``)."""
    candidates = [module]
    if module.startswith("numpy.core"):
        candidates.insert(0, "numpy._core" + module.removeprefix("numpy.core"))
    for candidate in candidates:
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise ForbiddenGlobalError(module, name)


class DataUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, dtypes and plain Python values, and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve an allowed global; raise :class:`ForbiddenGlobalError` for anything else."""
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in _NUMPY_GLOBALS:
            return _numpy_global(module, name)
        raise ForbiddenGlobalError(module, name)


def load_data_pickle(handle: BinaryIO, encoding: str = "bytes") -> Any:
    """Unpickle ``handle`` with :class:`DataUnpickler` (``encoding`` for Python 2 strings, as in ``pickle.load``)."""
    return DataUnpickler(handle, encoding=encoding).load()


def load_data_pickle_file(path: Path, encoding: str = "bytes") -> Any:
    """:func:`load_data_pickle` of the file at ``path``."""
    with open(path, "rb") as handle:
        return load_data_pickle(handle, encoding)
