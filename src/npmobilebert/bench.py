"""Benchmarks: latency, throughput, open time and peak memory of every engine on every model.

    npmobilebert bench -m a.tflite -m b.tflite --engine litert --engine numpy --threads 1 --threads 2 \\
        --file tweets.tsv --runs 50 --json bench.json --plot bench.png

Every (model, engine, threads) is measured in a fresh worker process (``bench_worker.py``), one
after the other within one invocation, so that the medians and their ratios are taken side by
side on the same machine state, and peak memory (``ru_maxrss``) belongs to that engine alone.
Times are taken inside the worker, around ``set inputs + invoke + read outputs`` (no IPC).

Engines (``ENGINES``):

* ``litert``          ai-edge-litert, default resolver (optimized kernels + XNNPACK)
* ``litert-builtin``  ai-edge-litert, optimized kernels without XNNPACK
* ``litert-ref``      ai-edge-litert, reference kernels (what the NumPy interpreter matches)
* ``numpy``           the NumPy interpreter, ``Interpreter.run``
* ``numpy-trace``     the NumPy interpreter keeping every intermediate, ``Interpreter.run_all``
* ``tflite-runtime``  tflite-runtime (default resolver) in the Python named by ``--runtime-python``
  or $NPMOBILEBERT_TFLITE_RUNTIME_PYTHON (or this one if it has it); "not supported" otherwise

Two input sets per measurement, both cycled through ``--runs`` timed runs after ``--warmup``:
``real`` -- tweet lengths (the texts of ``--file``, tokenized with the model's vocab) or random
lengths; ``padded`` -- every input ``--seq`` tokens long (default: the model's sequence length).
The graphs have fixed shapes, so both sets cost the same unless a runtime skips padding.
Throughput is batched where the model's batch dimension is free (shape signature -1), else it
is sequential: runs / total time of the ``real`` set. The ``numpy`` engine runs ``--batch``
inputs at a time (``Interpreter.run_batch``, as eval/classify do) and also reports the median
time per tweet of a batch (``batch_ms_per_tweet``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import InputError

ENGINES = ("litert", "litert-builtin", "litert-ref", "numpy", "numpy-trace", "tflite-runtime")
# the engines that run LiteRT in this Python, by runtime.RESOLVERS name
_LITERT_RESOLVERS = {"litert": "default", "litert-builtin": "builtin", "litert-ref": "ref"}
WORKER = Path(__file__).with_name("bench_worker.py")
SRC_DIR = str(Path(__file__).resolve().parents[1])


#: The instruction-set extensions that choose XNNPACK's and OpenBLAS's kernels (x86: the
#: /proc/cpuinfo "flags"; ARM: "Features"), so that a time says what machine made it.
ISA_FLAGS = ("sse4_2", "avx", "fma", "f16c", "avx2", "avx_vnni", "neon", "asimd", "asimdhp", "asimddp",
             "sve", "sve2", "i8mm", "bf16")
ISA_PREFIXES = ("avx512", "amx")


def cpu_info() -> dict:
    """The CPU's model name and its ISA extensions that matter for speed (Linux /proc/cpuinfo;
    platform.processor() elsewhere, without extensions)."""
    cpu, flags, named = platform.processor() or "", [], False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "Hardware") and not named:
                    cpu, named = value.strip(), True
                elif key in ("flags", "Features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    isa = [f for f in flags if f in ISA_FLAGS or f.startswith(ISA_PREFIXES)]
    return {"cpu": cpu, "isa": isa}


def blas_info() -> dict | None:
    """numpy's BLAS as it runs here: threadpoolctl's view (library, version, the kernel
    architecture OpenBLAS picked for this CPU), else numpy's build configuration."""
    try:
        from threadpoolctl import threadpool_info
        found = [d for d in threadpool_info() if d.get("user_api") == "blas"]
        if found:
            return {k: found[0].get(k) for k in ("internal_api", "version", "architecture", "threading_layer")}
    except Exception:  # noqa: BLE001 - threadpoolctl is optional; its probing can fail on odd builds
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return {"internal_api": blas.get("name"), "version": blas.get("version"),
                "architecture": None, "threading_layer": None}
    except Exception:  # noqa: BLE001 - numpy < 1.26 has no mode="dicts"
        return None


def isa_summary(isa: list[str]) -> str:
    """The widest vector extensions of a cpu_info()["isa"] list, e.g. 'avx2+avx512' or 'asimddp'."""
    families = ("amx", "avx512", "avx2", "sve2", "sve", "i8mm", "asimddp", "asimd", "neon")
    present = [f for f in families if any(flag.startswith(f) for flag in isa)]
    if "asimddp" in present or "asimd" in present:
        present = [f for f in present if f != "neon"]
    if "asimddp" in present:
        present = [f for f in present if f != "asimd"]
    return "+".join(present)


def machine_info(tflite_runtime_python: str | None = None) -> dict:
    info = {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
            **cpu_info(), "blas": blas_info(), "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "python": platform.python_version(), "numpy": np.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    try:
        from .runtime import runtime_name
        info["litert"] = runtime_name()
    except Exception:  # noqa: BLE001 - no runtime here
        info["litert"] = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            info["mem_total_gb"] = round(int(f.readline().split()[1]) / (1 << 20), 1)
    except (OSError, ValueError, IndexError):
        pass
    if tflite_runtime_python:
        info["tflite_runtime_python"] = tflite_runtime_python
    return info


def make_input_sets(model_path: str, runs: int, seq: int | None, texts: list[str] | None,
                    seed: int, out_path: str) -> dict:
    """Write the two input sets for one model to ``out_path``; what they are."""
    from .fileio import save_npz
    from .inputs import InputMaker
    from .model import load_model

    model = load_model(model_path)
    maker = InputMaker(model)
    rng = np.random.default_rng(seed)
    n = max(1, min(runs, 256))
    if texts:
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            made = [maker.from_text(t) for t in texts[:n]]
        truncated = sum("truncated" in str(w.message) for w in caught)
        source = f"{len(made)} tweets" + (f" ({truncated} truncated to {maker.seq_len} tokens)"
                                          if truncated else "")
    else:
        made = [maker.random(rng) for _ in range(n)]
        source = f"{len(made)} random lengths"
    full = maker.seq_len if maker.is_bert else 0
    pad_len = int(seq or full)
    if maker.is_bert and not 2 <= pad_len <= full:
        raise InputError(f"--seq {pad_len}: the model {os.path.basename(model_path)} takes 2 to {full} tokens")
    if maker.is_bert:
        low = min(999, maker.vocab_size // 2)
        padded = [maker.from_ids([101] + rng.integers(low, maker.vocab_size, pad_len - 2).tolist() + [102])
                  for _ in range(n)]
    else:
        padded = [maker.random(rng) for _ in range(n)]
    names = [model.tensors[i].name for i in model.inputs]
    arrays = {}
    for set_name, items in (("real", made), ("padded", padded)):
        for i, name in enumerate(names):
            arrays[f"{set_name}/{name}"] = np.stack([m.arrays[i] for m in items])
    lengths = [m.length for m in made]
    arrays["real_lengths"] = np.array(lengths, dtype=np.int32)
    save_npz(out_path, arrays)
    return {"inputs": source, "mean_tokens": float(np.mean(lengths)) if lengths else None,
            "padded_tokens": pad_len, "seq_len": full}


def run_worker(spec: dict, workdir: str, python: str | None = None, timeout_s: float = 3600) -> dict:
    """One measurement in a fresh process (see bench_worker.py)."""
    spec_path = os.path.join(workdir, "spec.json")
    with open(spec_path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    threads = str(spec["threads"])
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    if python is None:
        cmd = [sys.executable, "-m", "npmobilebert.bench", "--worker", spec_path]
        env["PYTHONPATH"] = SRC_DIR + os.pathsep + env.get("PYTHONPATH", "")
    else:
        cmd = [python, str(WORKER), spec_path]      # another Python: the worker file, self-contained
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s, cwd=workdir)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout_s:.0f} s"}
    except OSError as e:
        return {"status": "not supported", "reason": f"cannot start {cmd[0]}: {e.strerror or e}"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("INFO:")]
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        return {"status": "error", "reason": f"worker {how}" + (f": {tail[-1][:300]}" if tail else "")}


def run_bench(models: list[str], engines: list[str], threads: list[int], runs: int = 20,
              warmup: int = 3, seq: int | None = None, texts: list[str] | None = None, seed: int = 0,
              batch: int = 8, tflite_runtime_python: str | None = None, progress=None,
              rounds: int = 1) -> dict:
    """Measure every model x engine x threads; {"machine": ..., "results": [...]}.

    ``rounds`` > 1 measures the whole grid that many times, one round after the other, and reports
    each cell's median round (by p50; its p50 list in ``rounds_p50_ms``): on a shared host whose
    speed drifts over seconds, a cell measured in one window only can land in a slow or fast one."""
    from .info import model_info
    from .model import load_model
    from .runtime import check_litert_survives
    from .static_checks import check_graph

    bad = [e for e in engines if e not in ENGINES]
    if bad:
        raise InputError(f"unknown engine {bad[0]}: choose from {', '.join(ENGINES)}")
    if rounds < 1:
        raise InputError(f"rounds must be at least 1, not {rounds}")
    trt_python, trt_reason = None, ""
    if "tflite-runtime" in engines:
        from .errors import NpMobileBertError
        from .runtime import tflite_runtime_python as find
        try:
            trt_python = find(tflite_runtime_python)
            if os.sep in trt_python:            # the workers run in a temporary directory
                trt_python = os.path.abspath(trt_python)
        except NpMobileBertError as e:
            trt_reason = str(e)
    names = [os.path.basename(m) for m in models]
    names = [os.path.join(os.path.basename(os.path.dirname(os.path.abspath(m))), n) if names.count(n) > 1 else n
             for m, n in zip(models, names)]           # two models of one name: dir/name
    cells: dict[tuple, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="npmobilebert_bench_") as tmp:
        prepared = []
        for mi, model_path in enumerate(models):
            model = load_model(model_path)
            # what would exhaust memory or crash LiteRT is refused here, in one line, not
            # discovered by a worker (which would only make it a row of the report)
            check_graph(model.main)
            for engine in engines:
                if engine in _LITERT_RESOLVERS:
                    check_litert_survives(model_path, _LITERT_RESOLVERS[engine])
            info = model_info(model)
            del model
            inputs_path = os.path.join(tmp, f"inputs{mi}.npz")
            prepared.append((info, inputs_path, make_input_sets(model_path, runs, seq, texts, seed, inputs_path)))

        def measure(mi: int, engine: str, t: int) -> dict:
            info, inputs_path, sets = prepared[mi]
            row = {"model": names[mi], "model_path": str(models[mi]), "engine": engine, "threads": t,
                   "model_bytes": os.path.getsize(models[mi]), "parameters": info["parameters"]["count"],
                   "scheme": (info.get("quantization") or {}).get("scheme"), **sets}
            if engine == "tflite-runtime" and trt_python is None:
                return dict(row, status="not supported", reason=trt_reason)
            spec = {"engine": engine, "model": os.path.abspath(models[mi]), "threads": t, "warmup": warmup,
                    "runs": runs, "inputs": inputs_path, "batch": batch, "src": SRC_DIR}
            python = trt_python if engine == "tflite-runtime" else None
            # not realpath: a venv's python is a symlink to the base interpreter
            if python is not None and os.path.abspath(python) == os.path.abspath(sys.executable):
                python = None
            measured = run_worker(spec, tmp, python)
            return dict(row, **{k: v for k, v in measured.items() if k != "engine"})

        for _ in range(rounds):
            for mi in range(len(models)):
                for engine in engines:
                    for t in threads:
                        row = measure(mi, engine, t)
                        cells.setdefault((mi, engine, t), []).append(row)
                        if progress is not None:
                            progress(row)
    results = [_median_round(rows) for rows in cells.values()]
    return {"machine": machine_info(trt_python), "settings": {
        "runs": runs, "warmup": warmup, "rounds": rounds, "seq": seq, "seed": seed, "batch": batch,
        "inputs": "texts" if texts else "random lengths"}, "results": results}


def _median_round(rows: list[dict]) -> dict:
    """One cell's rounds -> the round whose p50 is the median (a failed round wins: it is news)."""
    if len(rows) == 1:
        return rows[0]
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        return failed[0]
    ordered = sorted(rows, key=lambda r: r["p50_ms"])
    return dict(ordered[(len(ordered) - 1) // 2], rounds_p50_ms=[r["p50_ms"] for r in rows])


def format_results(data: dict) -> str:
    m = data["machine"]
    isa = isa_summary(m.get("isa") or [])
    lines = [f"{m.get('cpu') or m.get('machine')}{f' ({isa})' if isa else ''}, {m.get('cpu_count')} CPUs, "
             f"Python {m.get('python')}, "
             f"numpy {m.get('numpy')}, {m.get('litert')}",
             f"{'model':<28} {'engine':<15} {'thr':>3} {'open s':>7} {'p50 ms':>9} {'p90 ms':>9} "
             f"{'p99 ms':>9} {'pad p50':>9} {'tweets/s':>9} {'RSS MB':>7}"]
    for r in data["results"]:
        head = f"{r['model'][:28]:<28} {r['engine']:<15} {r['threads']:>3}"
        if r.get("status") != "ok":
            lines.append(f"{head} {r.get('status')}: {r.get('reason', '')}")
            continue
        lines.append(f"{head} {r['open_s']:>7.3f} {r['p50_ms']:>9.2f} {r['p90_ms']:>9.2f} {r['p99_ms']:>9.2f} "
                     f"{r['padded']['p50_ms']:>9.2f} {r['tweets_per_s']:>9.1f} {r['peak_rss_mb']:>7.0f}")
    return "\n".join(lines)


def plot(data: dict, path: str, title: str | None = None) -> None:
    """Two panels: median latency per tweet (log scale, p90 whisker) and peak RSS, per model,
    one colour per engine (needs matplotlib: the [plot] extra)."""
    from .fileio import atomic_path, pyplot

    plt = pyplot()

    ok = [r for r in data["results"] if r.get("status") == "ok"]
    if not ok:
        raise InputError("nothing to plot: no measurement succeeded")
    rows = data["results"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    series = list(dict.fromkeys((r["engine"], r["threads"]) for r in rows))
    engines = list(dict.fromkeys(e for e, _ in series))
    thread_counts = sorted({t for _, t in series})
    hatches = ["", "///", "...", "xxx", "\\\\", "ooo"]
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.32 * len(models) * len(series) + 2.6),
                             gridspec_kw={"width_ratios": [3, 1.3]})
    height = 0.8 / len(series)
    lookup = {(r["model"], r["engine"], r["threads"]): r for r in rows}
    xmin = min(r["p50_ms"] for r in ok) / 2
    for s, (engine, t) in enumerate(series):
        colour = colours(engines.index(engine) % 10)
        hatch = hatches[thread_counts.index(t) % len(hatches)]
        label = f"{engine}, {t} thread{'s' if t > 1 else ''}" if len(thread_counts) > 1 else engine
        first = True
        for mi, model in enumerate(models):
            r = lookup.get((model, engine, t))
            if r is None:
                continue
            y = mi - 0.4 + height * (s + 0.5)
            if r.get("status") != "ok":
                axes[0].text(xmin * 1.05, y, f"{engine}: {r.get('status')}", va="center", fontsize=7,
                             color=colour)
                continue
            p50, p90 = r["p50_ms"], r["p90_ms"]
            axes[0].barh([y], [p50], height=height * 0.9, color=colour, hatch=hatch, edgecolor="white",
                         label=label if first else None,
                         xerr=[[0], [max(p90 - p50, 0)]],
                         error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "0.3"})
            axes[0].text(max(p50, p90) * 1.12, y, f"{p50:.3g} ms", va="center", fontsize=7)
            axes[1].barh([y], [r["peak_rss_mb"]], height=height * 0.9, color=colour, hatch=hatch,
                         edgecolor="white")
            axes[1].text(r["peak_rss_mb"] * 1.02, y, f"{r['peak_rss_mb']:.0f}", va="center", fontsize=7)
            first = False
    for ax in axes:
        ax.set_yticks(range(len(models)))
        ax.set_ylim(len(models) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticklabels([m.replace(".tflite", "") for m in models])
    axes[1].set_yticklabels([])
    axes[0].set_xscale("log")
    axes[0].set_xlim(xmin, max(r["p90_ms"] for r in ok) * 4)
    axes[1].set_xlim(0, max(r["peak_rss_mb"] for r in ok) * 1.18)
    axes[0].set_xlabel("median latency per tweet, ms (log scale; whisker: p90)")
    axes[1].set_xlabel("peak RSS of the process, MB")
    m = data["machine"]
    fig.suptitle(title or f"npmobilebert bench: {m.get('cpu') or m.get('machine')}, "
                 f"{data['settings']['inputs']}, {data['settings']['runs']} runs", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    legend_inches = 0.45 + 0.22 * ((len(labels) + 3) // 4)
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        from .bench_worker import main as worker_main

        sys.exit(worker_main(sys.argv[1:]))
    from .cli import entry

    sys.argv.insert(1, "bench")
    entry()


# -- bench --per-op: where the NumPy interpreter's time goes ----------------------------------------

LITERT_PER_OP_NOTE = ("LiteRT: no per-op profile from Python (ai-edge-litert's Python Interpreter has no "
                      "profiler hook: its op profiler is reachable only from C++, e.g. LiteRT's "
                      "benchmark_model --enable_op_profiling)")


def per_op_times(interp, input_sets: list, runs: int, warmup: int) -> dict[int, float]:
    """Median seconds of each op of the NumPy interpreter over ``runs`` runs (after ``warmup``),
    cycling through ``input_sets``.

    An observer sees each op right after it ran (Interpreter.run_all), so the time between two
    observer calls is that op: gathering its inputs, its kernel and the output checks. The
    unfused plan runs (fusion.py composes table ops only in plain ``run``): one time per op of
    the file, each intermediate kept, as in ``bench --engine numpy-trace``."""
    samples: dict[int, list[float]] = {step.ctx.op.index: [] for step in interp.plan}
    last = [0.0]

    def observe(step, inputs, outputs):
        now = time.perf_counter()
        samples[step.ctx.op.index].append(now - last[0])
        last[0] = time.perf_counter()

    for k in range(warmup):
        interp.run_all(input_sets[k % len(input_sets)])
    for k in range(runs):
        arrays = interp.bind_inputs(input_sets[k % len(input_sets)])
        last[0] = time.perf_counter()
        interp.run_all(arrays, observer=observe)
    return {i: float(np.median(s)) for i, s in samples.items() if s}


def format_per_op(model, seconds: dict[int, float], top: int = 15) -> str:
    total = max(sum(seconds.values()), 1e-12)
    lines = [f"NumPy interpreter, per op (median of each op; their sum {total * 1e3:.2f} ms):",
             f"{'op':>5} {'opcode':<18} {'us':>9} {'share':>6}  tensor"]
    by_type: dict[str, float] = {}
    for i, t in seconds.items():
        by_type[model.operators[i].opcode] = by_type.get(model.operators[i].opcode, 0.0) + t
    for i, t in sorted(seconds.items(), key=lambda kv: -kv[1])[:top]:
        op = model.operators[i]
        name = model.tensors[op.outputs[0]].name.split(";")[0] if op.outputs else ""
        lines.append(f"{i:>5} {op.opcode:<18} {t * 1e6:>9.1f} {t / total:>6.1%}  {name[:60]!r}")
    lines.append("by op type: " + ", ".join(f"{k} {v / total:.1%}" for k, v in
                                            sorted(by_type.items(), key=lambda kv: -kv[1])))
    lines.append(LITERT_PER_OP_NOTE)
    return "\n".join(lines)
