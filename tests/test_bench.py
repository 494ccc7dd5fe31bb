"""`npmobilebert bench`: a functional smoke test only (timings are never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ai_edge_litert.interpreter")

TINY = str(Path(__file__).parent / "fixtures" / "tiny_int8.tflite")
NUMBERS = ("p50_ms", "p90_ms", "p99_ms", "tweets_per_s", "peak_rss_mb", "open_s")


def test_bench_json_schema(tmp_path):
    out = tmp_path / "bench.json"
    texts = tmp_path / "tweets.txt"
    texts.write_text("great phone, awful battery\nthe bank fixed it in a day\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "npmobilebert.cli", "bench", "-m", TINY, "--engine", "litert",
           "--engine", "numpy-trace", "--engine", "tflite-runtime", "--threads", "1", "--threads", "2",
           "--runs", "2", "--warmup", "1", "--file", str(texts), "--json", str(out)]
    plot = None
    try:
        import matplotlib  # noqa: F401
        plot = tmp_path / "bench.png"
        cmd += ["--plot", str(plot)]
    except ImportError:
        pass
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    machine = data["machine"]
    assert {"system", "machine", "cpu_count", "python", "numpy", "cpu", "isa", "blas", "litert"} <= set(machine)
    assert machine["litert"].startswith("ai-edge-litert ")
    assert isinstance(machine["isa"], list) and machine["blas"]["internal_api"]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():                        # what the kernel says this CPU is and can do
        text = cpuinfo.read_text()
        if any(line.startswith(("model name", "Model", "Hardware")) for line in text.splitlines()):
            assert machine["cpu"] and machine["cpu"] in text
        assert all(f" {flag}" in text for flag in machine["isa"])
        if machine["machine"] == "x86_64" and " avx2" in text:
            assert "avx2" in machine["isa"]
    # no terminal here: one progress line per measured cell
    progress = [line for line in r.stderr.splitlines() if line.startswith("bench ")]
    assert [line.split(":")[0] for line in progress] == [f"bench {k}/6" for k in range(1, 7)]
    assert len(data["results"]) == 6
    for row in data["results"]:
        assert {"engine", "model", "threads", "status"} <= set(row)
        assert row["model"] == "tiny_int8.tflite"
        if row["engine"] == "tflite-runtime" and row["status"] != "ok":
            assert row["reason"]             # "not supported" here, with the reason
            continue
        assert row["status"] == "ok", row
        for key in NUMBERS:
            assert isinstance(row[key], float) and row[key] > 0, key
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["padded"]["p50_ms"] > 0 and row["runs"] == 2 and row["n"] == 2
        assert row["inputs"].startswith("2 tweets")
    assert {(r["engine"], r["threads"]) for r in data["results"]} == {
        (e, t) for e in ("litert", "numpy-trace", "tflite-runtime") for t in (1, 2)}
    if plot is not None:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rounds_report_each_cells_median_round(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "npmobilebert.cli", "bench", "-m", TINY, "--engine", "numpy",
                        "--engine", "litert", "--runs", "3", "--warmup", "1", "--rounds", "3", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    assert data["settings"]["rounds"] == 3
    assert [row["engine"] for row in data["results"]] == ["numpy", "litert"]      # one row per cell
    for row in data["results"]:
        assert row["status"] == "ok" and len(row["rounds_p50_ms"]) == 3
        assert row["p50_ms"] == sorted(row["rounds_p50_ms"])[1]


def test_bench_rejects_unknown_engine():
    r = subprocess.run([sys.executable, "-m", "npmobilebert.cli", "bench", "-m", TINY, "--engine", "tpu"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown engine" in r.stderr


def test_bench_plot_without_matplotlib_fails_before_measuring(tmp_path):
    # matplotlib made unimportable (None in sys.modules), as on an install without the [plot] extra
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    code = ("import sys; sys.modules['matplotlib'] = None; sys.argv[0] = 'npmobilebert'; "
            "from npmobilebert.cli import entry; entry()")
    r = subprocess.run([sys.executable, "-c", code, "bench", "-m", TINY, "--engine", "numpy", "--runs", "500",
                        "--json", str(out), "--plot", str(plot)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "[plot]" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists() and not plot.exists()         # nothing measured, nothing written


def test_bert_large_is_counted_from_its_config():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from paper_table import BERT_LARGE, bert_parameters

    counted = bert_parameters(**BERT_LARGE)
    # 24 layers of 4 attention projections + 2 FFN matrices with biases and 2 LayerNorms
    assert counted["per_layer"] == 12_596_224
    assert counted["total"] == 335_141_888
