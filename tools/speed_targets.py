"""The NumPy interpreter's speed and memory targets (issue #6), measured side by side.

Runs ``npmobilebert bench`` (each engine in a fresh process, one after the other, same inputs)
on a full-size int8 MobileBERT and prints the ratios the issue sets:

  NumPy p50 <= 3x LiteRT default (XNNPACK)         NumPy >= 5x faster than LiteRT BUILTIN_REF
  numpy-trace p50 <= 1.3x numpy                    open + prepare <= 0.2 s
  peak RSS <= model file size + 150 MB

for every model given (the first is the one the targets are judged on; the others -- seq 64,
dynamic-range, 16x8 -- are reported), at 1 thread and at every --threads. Writes the raw bench
results and the ratios to --json.

On a shared machine a slow spell of a few seconds can land on one engine and not the others;
``--rounds R`` runs the whole sequence R times, interleaving the engines in time, and judges the
median of each engine's R medians (every round's ratios are printed and kept too).

    python tools/convert.py --vocab "$V" --seed 0 --layers 24 --seq-len 128 \\
        --schemes int8,dynamic,16x8 --out-dir /tmp/full --name mobilebert --quiet
    python tools/convert.py --vocab "$V" --seed 0 --layers 24 --seq-len 64 \\
        --schemes int8 --out-dir /tmp/full64 --name mobilebert --quiet
    python tools/speed_targets.py /tmp/full/mobilebert_int8.tflite /tmp/full64/mobilebert_int8.tflite \\
        /tmp/full/mobilebert_dynamic.tflite /tmp/full/mobilebert_16x8.tflite --threads 1 2 \\
        --json docs/speed.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from npmobilebert.bench import run_bench  # noqa: E402
from npmobilebert.errors import InputError  # noqa: E402
from npmobilebert.fileio import atomic_path, check_writable, save_json  # noqa: E402

ENGINES = ("litert", "litert-ref", "numpy", "numpy-trace")
TARGETS = {"numpy_vs_litert": 3.0, "ref_vs_numpy": 5.0, "trace_vs_numpy": 1.3, "open_s": 0.2, "rss_over_file_mb": 150}


def ratios(rows: list[dict]) -> dict:
    """One model at one thread count: {engine: row} -> the issue's ratios and their verdicts."""
    by = {r["engine"]: r for r in rows if r.get("status") == "ok"}
    numpy = by.get("numpy")
    if numpy is None:
        return {"error": "numpy did not run"}
    out = {"numpy_p50_ms": numpy["p50_ms"], "open_s": numpy["open_s"], "peak_rss_mb": numpy["peak_rss_mb"],
           "file_mb": numpy["model_bytes"] / 2**20}
    out["rss_over_file_mb"] = out["peak_rss_mb"] - out["file_mb"]
    if "litert" in by:
        out["litert_p50_ms"] = by["litert"]["p50_ms"]
        out["numpy_vs_litert"] = numpy["p50_ms"] / by["litert"]["p50_ms"]
    if "litert-ref" in by:
        out["litert_ref_p50_ms"] = by["litert-ref"]["p50_ms"]
        out["ref_vs_numpy"] = by["litert-ref"]["p50_ms"] / numpy["p50_ms"]
    if "numpy-trace" in by:
        out["trace_p50_ms"] = by["numpy-trace"]["p50_ms"]
        out["trace_vs_numpy"] = by["numpy-trace"]["p50_ms"] / numpy["p50_ms"]
    out["pass"] = {
        "numpy <= 3x litert": out.get("numpy_vs_litert", float("inf")) <= TARGETS["numpy_vs_litert"],
        "numpy >= 5x faster than litert-ref": out.get("ref_vs_numpy", 0) >= TARGETS["ref_vs_numpy"],
        "trace <= 1.3x numpy": out.get("trace_vs_numpy", float("inf")) <= TARGETS["trace_vs_numpy"],
        "open <= 0.2 s": out["open_s"] <= TARGETS["open_s"],
        "peak RSS <= file + 150 MB": out["rss_over_file_mb"] <= TARGETS["rss_over_file_mb"],
    }
    return out


def rows_of(results: list[dict], model: str, threads: int) -> list[dict]:
    return [r for r in results if r["model"] == model and r["threads"] == threads]


def merge_rounds(rounds: list[dict]) -> dict:
    """Several run_bench results of the same sequence -> one, each (model, engine, threads) row
    holding the median over the rounds of its p50 / p90 / p99 and open time, the largest peak
    RSS, and every round's p50 (``p50_ms_rounds``)."""
    if len(rounds) == 1:
        return rounds[0]
    merged = dict(rounds[0])
    merged["settings"] = {**rounds[0]["settings"], "rounds": len(rounds)}
    results = []
    for row in rounds[0]["results"]:
        key = (row["model"], row["engine"], row["threads"])
        same = [r for rnd in rounds for r in rnd["results"]
                if (r["model"], r["engine"], r["threads"]) == key and r.get("status") == "ok"]
        if row.get("status") != "ok":
            results.append(row)
            continue
        if len(same) < len(rounds):
            results.append({**row, "status": "failed in a round"})
            continue
        out = dict(row)
        for field in ("p50_ms", "p90_ms", "p99_ms", "open_s"):
            out[field] = statistics.median(r[field] for r in same)
        out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in same)
        out["p50_ms_rounds"] = [r["p50_ms"] for r in same]
        results.append(out)
    merged["results"] = results
    return merged


def describe(model: str, threads: int, r: dict) -> list[str]:
    if "error" in r:
        return [f"{model} ({threads} thread{'s' if threads > 1 else ''}): {r['error']}"]
    head = f"{model} ({threads} thread{'s' if threads > 1 else ''})"
    lines = [f"{head}: numpy {r['numpy_p50_ms']:.1f} ms, litert {r.get('litert_p50_ms', float('nan')):.1f} ms, "
             f"litert-ref {r.get('litert_ref_p50_ms', float('nan')):.1f} ms, "
             f"numpy-trace {r.get('trace_p50_ms', float('nan')):.1f} ms (p50)",
             f"  numpy / litert = {r.get('numpy_vs_litert', float('nan')):.2f}x   "
             f"litert-ref / numpy = {r.get('ref_vs_numpy', float('nan')):.2f}x   "
             f"trace / numpy = {r.get('trace_vs_numpy', float('nan')):.2f}x",
             f"  open {r['open_s']:.3f} s   peak RSS {r['peak_rss_mb']:.0f} MiB = file {r['file_mb']:.1f} MiB "
             f"+ {r['rss_over_file_mb']:.0f} MiB"]
    if "rounds" in r:
        for key, label in (("numpy_vs_litert", "numpy / litert"), ("ref_vs_numpy", "litert-ref / numpy")):
            values = [x[key] for x in r["rounds"] if key in x]
            lines.append(f"  {label} by round: " + ", ".join(f"{v:.2f}x" for v in values))
    lines += [f"  {'PASS' if ok else 'FAIL'} {name}" for name, ok in r["pass"].items()]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="the first is judged; the others are reported")
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="repeat the whole sequence; judge the medians")
    ap.add_argument("--json", default=None, help="write the bench results and ratios here")
    ap.add_argument("--markdown", default=None, help="write the summary table here (e.g. docs/speed.md)")
    args = ap.parse_args(argv)
    for m in args.models:
        if not os.path.isfile(m):
            print(f"error: no such model: {m}", file=sys.stderr)
            return 2
    try:                                   # before minutes of measuring, not after them
        for out in (args.json, args.markdown):
            if out:
                check_writable(out)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    threads = sorted(set([1] + args.threads))

    def progress(row):
        status = f"{row['p50_ms']:.1f} ms" if row.get("status") == "ok" else row.get("status")
        print(f"  {row['model']:<32} {row['engine']:<12} {row['threads']} thr: {status}", flush=True)

    rounds = []
    for k in range(args.rounds):
        if args.rounds > 1:
            print(f"round {k + 1} of {args.rounds}", flush=True)
        rounds.append(run_bench(args.models, list(ENGINES), threads, runs=args.runs, warmup=args.warmup,
                                progress=progress))
    data = merge_rounds(rounds)
    summary = []
    for model in dict.fromkeys(r["model"] for r in data["results"]):
        for t in threads:
            entry = {"model": model, "threads": t, **ratios(rows_of(data["results"], model, t))}
            if len(rounds) > 1:
                entry["rounds"] = [{k: v for k, v in ratios(rows_of(r["results"], model, t)).items()
                                    if k in ("numpy_vs_litert", "ref_vs_numpy", "trace_vs_numpy")}
                                   for r in rounds]
            summary.append(entry)
    print()
    for s in summary:
        print("\n".join(describe(s["model"], s["threads"], s)))
    data["targets"] = TARGETS
    data["summary"] = summary
    if args.json:
        save_json(args.json, data)
    if args.markdown:
        with atomic_path(args.markdown) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(markdown(data))
    return 0


def markdown(data: dict) -> str:
    m = data["machine"]

    def fmt(value, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    lines = ["# NumPy interpreter: speed and memory", "",
             f"Measured by `tools/speed_targets.py` (its docstring has the commands) on {m.get('cpu')}, "
             f"{m.get('cpu_count')} CPUs, Python {m.get('python')}, numpy {m.get('numpy')}, {m.get('litert')}: "
             f"every engine in a fresh process, one after the other, {data['settings']['runs']} timed runs after "
             f"{data['settings']['warmup']} warm-up, medians side by side"
             + (f"; the whole sequence {data['settings']['rounds']} times over, each figure the median of its "
                "rounds" if data["settings"].get("rounds", 1) > 1 else "")
             + ". `open` is loading and preparing "
             "the model (imports done); peak RSS is the process's (VmHWM), Python and NumPy included.", "",
             "| model | threads | numpy ms | LiteRT XNNPACK ms | numpy / XNNPACK (<= 3) | LiteRT ref ms "
             "| ref / numpy (>= 5) | numpy-trace / numpy (<= 1.3) | open s (<= 0.2) | peak RSS MiB | file MiB "
             "| RSS - file (<= 150) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in data["summary"]:
        if "error" in s:
            lines.append(f"| {s['model']} | {s['threads']} | {s['error']} |" + " |" * 9)
            continue
        lines.append(
            f"| {s['model']} | {s['threads']} | {s['numpy_p50_ms']:.1f} | {fmt(s.get('litert_p50_ms'), '.1f')} "
            f"| {fmt(s.get('numpy_vs_litert'), '.2f')} | {fmt(s.get('litert_ref_p50_ms'), '.0f')} "
            f"| {fmt(s.get('ref_vs_numpy'), '.2f')} | {fmt(s.get('trace_vs_numpy'), '.2f')} | {s['open_s']:.3f} "
            f"| {s['peak_rss_mb']:.0f} | {s['file_mb']:.1f} | {s['rss_over_file_mb']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
