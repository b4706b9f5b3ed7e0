"""``benchmarks/calibrate_sharpen_focus.py``: the calibration grid of chapter 2's cpu analog, run at smoke size
(one setting, one seed, the smoke profile's tiny data) — the JSON it writes and the table it prints."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

PATH = Path(__file__).parents[1] / "benchmarks" / "calibrate_sharpen_focus.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("calibrate_sharpen_focus", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_calibration_benchmark_at_smoke_size_writes_the_rows(tmp_path, capsys):
    from attnbook.chapters.sharpen_focus import calibration
    from attnbook.chapters.sharpen_focus.config import PROFILES

    out = tmp_path / "calibration.json"
    assert _benchmark().main(["--profile", "smoke", "--settings", "chosen", "--seeds", "1", "--workers", "1",
                              "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["profile"], report["seeds"], report["first_seed"]) == ("smoke", 1, 0) and report["seconds"] > 0
    (row,) = report["rows"]
    assert row["setting"] == "chosen" and row["description"] == calibration.SETTINGS["chosen"][0]
    assert row["n_seeds"] == 1
    smoke = PROFILES["smoke"]
    n_test = smoke.num_classes * smoke.test_per_class
    for key in calibration.DIAGNOSTICS:
        assert 0 <= row[key] <= 1 and row[f"{key}_sd"] is None  # one seed: no sd (NaN → null in the JSON)
    assert math.isclose(row["test_accuracy"] * n_test, round(row["test_accuracy"] * n_test), abs_tol=1e-4)
    assert row["pair_accuracy"] >= row["test_accuracy"]  # the right class is in the right pair
    printed = capsys.readouterr().out
    assert "pair acc. %" in printed and calibration.SETTINGS["chosen"][0] in printed


def test_calibration_benchmark_rejects_unknown_settings_and_no_seeds():
    benchmark = _benchmark()
    with pytest.raises(SystemExit):
        benchmark.main(["--settings", "nope"])
    with pytest.raises(SystemExit):
        benchmark.main(["--seeds", "0"])
