"""tools/real_files.py: the real-file corpus check.

The corpus itself (several hundred .tflite files from public repositories) is not part of this
repository: `python tools/real_files.py gather --out DIR` fetches it, and the slow test runs the
whole check on it when NPMOBILEBERT_REAL_FILES=DIR says where it is.  The fast tests run the same
check (LiteRT's op names, `info`, `verify --against ref --random 3`, each in a subprocess) on
our own fixtures, which must all verify.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "real_files.py"
FIXTURES = ROOT / "tests" / "fixtures"


def _check(tmp_path: Path, *selection: str) -> tuple[subprocess.CompletedProcess, dict]:
    pytest.importorskip("ai_edge_litert")
    out_json, out_md = tmp_path / "real_files.json", tmp_path / "real_files.md"
    ran = subprocess.run([sys.executable, str(SCRIPT), "check", *selection, "--src", str(ROOT / "src"),
                          "--json-out", str(out_json), "--md-out", str(out_md)],
                         capture_output=True, text=True)
    assert out_md.read_text().startswith("# Real .tflite files"), ran.stderr
    return ran, json.loads(out_json.read_text())


def _by_name(report: dict) -> dict:
    return {r["path"]: r for r in report["files"]}


def test_check_verifies_fixtures_and_classifies_a_refusal(tmp_path):
    """Two fixtures verify with LiteRT's op names; a truncated copy of one is a one-line refusal
    of a file LiteRT cannot load either, which is no failure."""
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes((FIXTURES / "tiny_int8.tflite").read_bytes()[:4000])
    ran, report = _check(tmp_path, "--files", str(FIXTURES / "tiny_int8.tflite"),
                         str(FIXTURES / "tiny_float32.tflite"), str(truncated))
    assert ran.returncode == 0, ran.stderr
    files = _by_name(report)
    for name in ("tiny_int8.tflite", "tiny_float32.tflite"):
        record = files[name]
        assert record["litert"]["runs"], record
        assert record["info"] == {"outcome": "ok", "message": "", "misreads": []}, record
        assert record["verify"]["outcome"] == "verified", record
        assert record["failures"] == []
    cut = files["truncated.tflite"]
    assert not cut["litert"]["loads"]
    assert cut["verify"]["outcome"] == "refused" and cut["verify"]["message"], cut
    assert cut["failures"] == []


@pytest.mark.slow
def test_check_verifies_every_fixture(tmp_path):
    fixtures = sorted(str(p) for p in FIXTURES.glob("*.tflite"))
    ran, report = _check(tmp_path, "--files", *fixtures)
    assert ran.returncode == 0, ran.stderr
    assert len(report["files"]) == len(fixtures)
    for record in report["files"]:
        assert record["verify"]["outcome"] == "verified", record
        assert record["info"]["misreads"] == [], record


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NPMOBILEBERT_REAL_FILES"),
                    reason="NPMOBILEBERT_REAL_FILES=DIR names a corpus made by tools/real_files.py gather")
def test_real_files_corpus(tmp_path):
    """Every real file: no internal error, no op-code misread, no mismatch against LiteRT."""
    corpus = Path(os.environ["NPMOBILEBERT_REAL_FILES"]).expanduser()
    ran, report = _check(tmp_path, "--corpus", str(corpus))
    checked = [r for r in report["files"] if "skipped" not in r]
    assert checked, "the corpus holds no file to check"
    bad = {f"{r['repo']}/{r['path']}": r["failures"] for r in checked
           if {"info internal error", "internal error", "misread", "mismatch"} & set(r["failures"])}
    assert bad == {}
    assert ran.returncode == 0, ran.stderr
