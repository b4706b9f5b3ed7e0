"""Run records: ids, atomic writes, schema validation on write and read."""
import json
import math

import pytest

from attnbook import runs


def test_run_id_is_stable_and_ignores_order_none_and_run_dir():
    a = runs.run_id({"seed": 1, "profile": "cpu", "method": "bla"})
    assert a == runs.run_id({"method": "bla", "profile": "cpu", "seed": 1, "epochs": None, "run_dir": "/x"})
    assert a != runs.run_id({"method": "bla", "profile": "cpu", "seed": 2})
    assert "/" not in runs.run_id({"path": "a/b c"})


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "x.json"
    runs.atomic_write_json(target, {"a": 1})
    runs.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_atomic_write_refuses_nan_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "x.json"
    runs.atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        runs.atomic_write_json(target, {"a": math.nan})
    assert json.loads(target.read_text()) == {"a": 1}
    assert len(list(tmp_path.iterdir())) == 1


def _recorder(tmp_path):
    return runs.start("00_testbed", run_dir=tmp_path / "run", profile="smoke", seed=3, params={"epochs": 2})


def test_record_roundtrip_has_provenance(tmp_path):
    rec = _recorder(tmp_path)
    rec.log("accuracy/aligned", 0.9)
    rec.table("per_seed", [{"seed": 0, "acc": 0.5}])
    rec.claim(id="c1", paper="EAT", claim="FAR improves", paper_value=5.39, ours=None, setting="not run",
              status="not run", note="needs CUB")
    record = runs.read_record(rec.finish().parent)
    assert record["metrics"] == {"accuracy/aligned": 0.9}
    assert record["params"] == {"profile": "smoke", "seed": 3, "epochs": 2}
    assert record["run_id"] == runs.run_id(record["params"])
    assert {"torch", "numpy", "python"} <= set(record["packages"])
    assert record["device"].startswith("cpu") and record["wall_time_s"] >= 0


def test_non_finite_metrics_are_refused(tmp_path):
    with pytest.raises(ValueError, match="finite"):
        _recorder(tmp_path).log("x", float("nan"))


def test_claims_need_a_known_status_and_a_reason_when_not_run():
    with pytest.raises(ValueError, match="status"):
        runs.Claim(id="a", paper="p", claim="c", paper_value=1, ours=1, setting="s", status="done")
    with pytest.raises(ValueError, match="must say why"):
        runs.Claim(id="a", paper="p", claim="c", paper_value=1, ours=None, setting="s", status="not run")


def test_read_rejects_schema_violations(tmp_path):
    rec = _recorder(tmp_path)
    path = rec.finish()
    record = json.loads(path.read_text())
    record["metrics"]["bad"] = "high"
    path.write_text(json.dumps(record))
    with pytest.raises(runs.ResultsError, match="metrics/bad"):
        runs.read_record(path.parent)
    path.write_text("{truncated")
    with pytest.raises(runs.ResultsError, match="not valid JSON"):
        runs.read_record(path.parent)
    with pytest.raises(runs.ResultsError, match="did not finish"):
        runs.read_record(tmp_path / "missing")


def test_undefined_table_cells_become_null(tmp_path):
    import pandas as pd

    rec = _recorder(tmp_path)
    rows = rec.table("t", pd.DataFrame({"a": [1.0, float("nan")], "b": ["x", "y"]}))
    assert [r["a"] for r in rows] == [1.0, None]
    assert runs.read_record(rec.finish().parent)["tables"]["t"][1]["a"] is None
