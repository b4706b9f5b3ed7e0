"""Run records: ids, atomic writes, schema validation on write and read."""
import json
import math

import pytest

from attnbook import runs


@pytest.fixture(autouse=True)
def _no_managed_threads(monkeypatch):
    monkeypatch.delenv(runs.THREADS_ENV, raising=False)  # set by the runner for its kernels only


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


def test_record_has_code_version_and_threads(tmp_path):
    from attnbook.provenance import code_version

    record = runs.read_record(_recorder(tmp_path).finish().parent)
    assert record["code_version"] == code_version() and len(code_version()) == 12
    assert isinstance(record["threads"], int) and record["threads"] >= 1


def test_code_version_changes_with_any_source_file(tmp_path):
    import shutil

    from attnbook.provenance import hash_code, package_dir

    copy = tmp_path / "attnbook"
    shutil.copytree(package_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert hash_code(copy) == runs.code_version()
    (copy / "metrics.py").write_text((copy / "metrics.py").read_text() + "\n# an edit\n")
    edited = hash_code(copy)
    (copy / "schemas" / "metrics.schema.json").write_text("{}")
    assert len({runs.code_version(), edited, hash_code(copy)}) == 3


def test_checkpoint_context_names_config_and_code(tmp_path):
    from attnbook.chapters.testbed.config import CHAPTER

    config = CHAPTER.resolve("smoke", 0, p_bias=0.5)
    rec = runs.start("00_testbed", run_dir=tmp_path / "run", profile="smoke", seed=0, params={}, config=config)
    context = rec.checkpoint_context
    assert context["config"]["p_bias"] == 0.5 and context["code_version"] == runs.code_version()
    json.dumps(context)  # JSON-able, as fit(context=...) needs


def test_values_are_recorded_as_the_config_parsed_them(tmp_path):
    from attnbook.chapters.testbed.config import CHAPTER

    config = CHAPTER.resolve("smoke", "01", epochs="03")
    rec = runs.start("00_testbed", run_dir=tmp_path / "run", profile="smoke", seed="01", config=config,
                     params={"epochs": "03", "arch": None})
    assert rec.params == {"profile": "smoke", "seed": 1, "epochs": 3} and rec.seed == 1
    assert runs.run_id(rec.params) == runs.run_id({"profile": "smoke", "seed": 1, "epochs": 3})


def test_runs_of_your_own_get_their_own_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNBOOK_RESULTS", str(tmp_path))
    params = {"profile": "smoke", "seed": 0}
    batch = runs.default_run_dir("00_testbed", params)
    batch.mkdir(parents=True)
    (batch / runs.METRICS_FILE).write_text("the batch run's record")
    first = runs.start("00_testbed", run_dir="", profile="smoke", seed=0, params={})
    assert first.run_dir == tmp_path / "00_testbed" / runs.INTERACTIVE_DIR / batch.name
    first.finish()
    second = runs.start("00_testbed", run_dir="", profile="smoke", seed=0, params={})
    assert second.run_dir.name == f"{batch.name}~2"
    second.finish()
    assert (batch / runs.METRICS_FILE).read_text() == "the batch run's record"
    assert runs.read_record(first.run_dir)["run_id"] == batch.name
    assert list(runs.iter_runs("00_testbed")) == [batch]  # `attnbook results` lists batch runs only


def test_a_finished_run_is_never_rewritten_in_place(tmp_path):
    done = _recorder(tmp_path).finish().parent
    before = (done / runs.METRICS_FILE).read_text()
    with pytest.raises(runs.ResultsError, match="never rewritten in place"):
        runs.start("00_testbed", run_dir=done, profile="smoke", seed=3, params={"epochs": 2})
    late = runs.start("00_testbed", run_dir=tmp_path / "late", profile="smoke", seed=3, params={"epochs": 2})
    other = _recorder(tmp_path / "x")
    other.run_dir = late.run_dir
    other.finish()  # another recorder finished there meanwhile
    with pytest.raises(runs.ResultsError, match="never rewritten in place"):
        late.finish()
    assert (done / runs.METRICS_FILE).read_text() == before
    late_path = other.finish()  # a recorder may update its own record
    assert runs.read_record(late_path.parent)["seed"] == 3
