"""The Makefile's developer targets: `make quickstart` shows its progress, `make bench` runs every benchmark.

`make` runs the real Makefile in a temporary folder with stand-ins for python, pip and modelyard that print
and record what they are asked, so no package is installed.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = ROOT / "Makefile"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

# Stand-in for `$(PYTHON)`: `-m venv DIR` makes DIR/bin with stand-ins for python, pip and modelyard.
FAKE_PYTHON = """#!/bin/sh
[ "$1" = "-m" ] && [ "$2" = "venv" ] || exit 2
mkdir -p "$3/bin"
for tool in python pip modelyard; do
  printf '#!/bin/sh\\necho "%s $*" >> "%s/calls.log"\\necho "(%s output: $*)"\\n' \
    "$tool" "$LOG_DIR" "$tool" > "$3/bin/$tool"
  chmod +x "$3/bin/$tool"
done
"""


def _make(tmp_path: Path, *args: str) -> str:
    if not (tmp_path / "Makefile").exists():
        shutil.copy(MAKEFILE, tmp_path / "Makefile")
        (tmp_path / "pyproject.toml").write_text("[project]\nname = 'stand-in'\n")
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    done = subprocess.run(
        ["make", "--no-print-directory", f"PYTHON={python}", *args],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "LOG_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_quickstart_announces_each_stage_and_shows_pips_progress(tmp_path):
    out = _make(tmp_path, "quickstart")
    lines = out.splitlines()

    def index(pattern: str) -> int:
        found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert found, f"no line matches {pattern!r} in:\n{out}"
        return found[0]

    venv = index(r"^==> creating the virtual environment \.venv$")
    install = index(r"^==> installing modelyard\[quickstart\] .*first run: a minute or two")
    pip_output = index(r"^\(pip output: install .*-e \.\[quickstart\]\)$")  # pip's output reaches the user
    run = index(r"^==> running the quickstart")
    assert venv < install < pip_output < run < index(r"^\(modelyard output: quickstart\)$")

    calls = (tmp_path / "calls.log").read_text().splitlines()
    installs = [c for c in calls if c.startswith("pip install") and "-e" in c.split()]
    assert len(installs) == 1
    assert not {"-q", "--quiet"} & set(installs[0].split()), installs[0]  # --quiet would hide the progress
    assert "--progress-bar on" in installs[0]

    again = _make(tmp_path, "quickstart")  # installed: straight to the run
    assert "==> installing" not in again and "==> running the quickstart" in again


def test_bench_runs_every_benchmark_script(tmp_path):
    scripts = sorted(p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
    assert "serving.py" in scripts
    out = _make(tmp_path, "--dry-run", "--always-make", "bench")
    ran = re.findall(r"/bin/python bench/(\w+\.py)\b", out)
    assert sorted(ran) == scripts, out
