"""The data-only unpickler: which globals real array pickles need (per protocol), and what it refuses."""
from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
from fixtures import py2_pickle

from attnbook.data.real.pickles import ALLOWED_GLOBALS, ForbiddenGlobalError, load_data_pickle

BATCH = {b"data": np.arange(24, dtype=np.uint8).reshape(4, 6), b"fine_labels": [1, 2, 3, 4],
         b"fine_label_names": [b"apple", b"bear"], b"batch_label": b"training batch 1 of 1", b"mean": 0.5,
         "nested": {"list": [1.5, None, True], "tuple": (1, "x")}}


class _Recorder(pickle.Unpickler):
    """A plain unpickler that notes every global it resolves."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.seen: set[tuple[str, str]] = set()

    def find_class(self, module, name):
        self.seen.add((module, name))
        return super().find_class(module, name)


def _globals(data: bytes) -> set[tuple[str, str]]:
    recorder = _Recorder(data)
    recorder.load()
    return recorder.seen


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k]
                                        for k in a)


def test_globals_a_protocol_2_batch_needs():
    numpy_names = {"numpy.core.multiarray", "numpy._core.multiarray"}
    seen = _globals(pickle.dumps(BATCH, protocol=2))  # Python 3 writes bytes at protocol 2 via _codecs.encode
    assert {m for m, n in seen if n == "_reconstruct"} <= numpy_names
    assert {n for _, n in seen} == {"_reconstruct", "ndarray", "dtype", "encode"} and ("_codecs", "encode") in seen
    assert _globals(py2_pickle(BATCH)) == {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                                           ("numpy", "dtype")}  # the real files: Python 2 cPickle


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_batches_of_every_protocol_load(protocol):
    data = pickle.dumps(BATCH, protocol=protocol)
    assert _globals(data) <= ALLOWED_GLOBALS
    assert _same(load_data_pickle(io.BytesIO(data)), BATCH)


def test_python2_batch_loads():
    loaded = load_data_pickle(io.BytesIO(py2_pickle(BATCH)))
    assert loaded[b"data"].dtype == np.uint8 and loaded[b"data"].tolist() == BATCH[b"data"].tolist()
    assert loaded[b"fine_label_names"] == [b"apple", b"bear"]


class _Call:
    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("function,args", [(os.system, ("true",)), (eval, ("1",)), (getattr, ("x", "upper")),
                                           (np.load, ("x.npy",)), (print, ("hi",))])
def test_code_is_refused(function, args, capsys):
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        data = pickle.dumps({b"data": _Call(function, *args)}, protocol=protocol)
        with pytest.raises(ForbiddenGlobalError):
            load_data_pickle(io.BytesIO(data))
    assert capsys.readouterr().out == ""


def test_only_latin1_bytes_decoding():
    crafted = pickle.dumps(_Call(__import__("_codecs").encode, "eA==", "base64"), protocol=2)
    with pytest.raises(ForbiddenGlobalError, match="encode"):
        load_data_pickle(io.BytesIO(crafted))
