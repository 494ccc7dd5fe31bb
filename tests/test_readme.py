"""README.md's Python blocks, run as written: each block on its own, in a fresh interpreter, from a
directory outside the checkout (so no block may depend on the current directory)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import npmobilebert

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.M | re.S)


def run_block(code: str, cwd: Path) -> subprocess.CompletedProcess:
    # the npmobilebert these tests import, whichever way it is installed
    env = {**os.environ, "PYTHONPATH": str(Path(npmobilebert.__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("number", range(1, len(BLOCKS)))     # the first: the quick start's test
def test_readme_python_block_runs_as_written(number, tmp_path):
    r = run_block(BLOCKS[number], tmp_path)
    assert r.returncode == 0, f"README python block {number + 1}:\n{BLOCKS[number]}\n{r.stderr}"


def test_the_quick_start_is_three_lines_printing_labels_and_probabilities(tmp_path):
    quick_start = BLOCKS[0]
    assert len(quick_start.strip().splitlines()) <= 3
    r = run_block(quick_start, tmp_path)
    assert r.returncode == 0, r.stderr
    labels = npmobilebert.Classifier(engine="numpy").labels
    lines = r.stdout.strip().splitlines()
    assert lines
    for line in lines:
        label, probabilities = line.split(" ", 1)
        assert label in labels
        assert all(f"'{name}': " in probabilities for name in labels)
