"""``attnbook list`` (and the CLI's start-up) stays instant: no torch import."""
import subprocess
import sys


def test_attnbook_list_imports_no_torch():
    code = ("import sys; from attnbook import cli; cli.main(['list']); "
            "heavy = [m for m in ('torch', 'torchvision', 'matplotlib', 'pandas') if m in sys.modules]; "
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out[-500:]
