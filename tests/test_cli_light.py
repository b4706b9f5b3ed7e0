"""``attnbook list`` (and the CLI's start-up) stays instant: no torch import."""
import subprocess
import sys


def test_attnbook_list_imports_no_torch():
    code = ("import sys; from attnbook import cli; cli.main(['list']); "
            "heavy = [m for m in ('torch', 'torchvision', 'matplotlib', 'pandas') if m in sys.modules]; "
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out[-500:]


# --- benchmarks/gpu_check.py (`make gpu-check`): no GPU needed to test it ------------------------------------

def _gpu_check():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def test_gpu_check_without_cuda_is_one_line_and_exit_2(tmp_path):
    import os

    _, path = _gpu_check()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "ATTNBOOK_RESULTS": str(tmp_path)}
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "gpu-check: no CUDA GPU is visible (torch.cuda.is_available() is False); run `make gpu-check` on a machine "
        "with an NVIDIA GPU"]
    assert not any(tmp_path.iterdir())  # no report without a GPU


def test_gpu_check_code_path_on_cpu_at_tiny_sizes(tmp_path, monkeypatch):
    """Every section once, on the CPU at tiny sizes, with the cluster fixture chapter as the only chapter."""
    import json
    from pathlib import Path

    from attnbook import chapters, runs

    fixtures = Path(__file__).parent / "runner_fixtures"
    monkeypatch.delenv(runs.THREADS_ENV, raising=False)
    monkeypatch.syspath_prepend(str(fixtures))
    monkeypatch.setitem(chapters._MODULES, "98_cluster_fixture", "cluster_fixture_chapter")
    gpu_check, _ = _gpu_check()
    assert gpu_check.main(["--allow-cpu", "--tiny", "--profile", "smoke", "--nbs", str(fixtures), "--chapters",
                           "98_cluster_fixture", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["throughput"]["images_per_s"] > 0 and report["throughput"]["channels_last"]
    from attnbook.methods.registry import HEADS

    heads = {row["head"]: row for row in report["overheads"]}
    assert set(heads) == set(HEADS) and heads["gap"]["overhead"] == 0
    assert "base_head" in heads["bla_ph"]["error"]  # post hoc: it needs a trained classifier, reported as such
    assert all("ms_per_step" in row for head, row in heads.items() if head != "bla_ph"), heads
    [chapter] = report["chapters"]
    assert chapter["status"] == "complete" and chapter["chapter"] == "98_cluster_fixture"
    assert runs.read_record(Path(chapter["run_dir"]))["profile"] == "smoke"
    markdown = (tmp_path / "gpu-check.md").read_text()
    assert "images/s" in markdown and "| brnpa |" in markdown and "| 98_cluster_fixture | complete |" in markdown
    assert gpu_check.reduced_params("04_bla", 1) == ["n_seeds=2", "epochs_override=1"]
