"""One benchmark measurement in a fresh process: open one model with one engine, time it, report.

Run by ``bench.py`` as ``python -m npmobilebert.bench --worker SPEC.json`` (or, for tflite-runtime in
another Python that has no npmobilebert, as ``PY path/to/bench_worker.py SPEC.json``).  A fresh
process per measurement keeps peak memory (``ru_maxrss``) from mixing between engines, and lets
the thread count of NumPy's BLAS be set before NumPy is imported.

Self-contained on purpose: at import it needs only the standard library; NumPy, the runtime
and (for the ``numpy*`` engines) npmobilebert are imported inside ``main``.  The last line on
stdout is one JSON object: the measurement, or ``{"status": "error", "reason": ...}``.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import resource
import sys
import time

#: engine -> (runtime, resolver type or None)
ENGINES = {
    "litert": ("ai_edge_litert", "AUTO"),
    "litert-builtin": ("ai_edge_litert", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"),
    "litert-ref": ("ai_edge_litert", "BUILTIN_REF"),
    "tflite-runtime": ("tflite_runtime", "AUTO"),
    "numpy": ("npmobilebert", None),
    "numpy-trace": ("npmobilebert", None),
}


def _rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux from /proc/self/status (VmHWM), not ``ru_maxrss``: the kernel carries ru_maxrss
    across execve, and Python starts workers with vfork, so a worker's ru_maxrss starts at its
    parent's peak (measured: a child of a 525 MB parent reports 525 MB, VmHWM 9 MB)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024.0   # bytes on macOS, KiB elsewhere


def _percentiles(times_s):
    import numpy as np

    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
            "min_ms": float(ms.min()), "n": int(ms.size)}


def _limit_blas_threads(threads: int) -> str:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "env"          # OMP/OPENBLAS/MKL_NUM_THREADS were set by the parent
    threadpool_limits(threads)
    return "threadpoolctl+env"


class _TFLiteEngine:
    def __init__(self, module_name, resolver, model_path, threads):
        if module_name == "ai_edge_litert":
            from ai_edge_litert import interpreter as mod
            from importlib import metadata
            self.version = "ai-edge-litert " + metadata.version("ai-edge-litert")
        else:
            from tflite_runtime import interpreter as mod  # type: ignore[import-not-found]
            import tflite_runtime
            self.version = "tflite-runtime " + getattr(tflite_runtime, "__version__", "?")
        self.mod = mod
        self.it = mod.Interpreter(model_path=model_path, num_threads=threads,
                                  experimental_op_resolver_type=getattr(mod.OpResolverType, resolver))
        self.it.allocate_tensors()
        self.inputs = self.it.get_input_details()
        self.outputs = self.it.get_output_details()
        self.names = [d["name"] for d in self.inputs]

    def run(self, arrays):
        it = self.it
        for d, a in zip(self.inputs, arrays):
            it.set_tensor(d["index"], a)
        it.invoke()
        return [it.get_tensor(d["index"]).copy() for d in self.outputs]

    def batch_size_allowed(self) -> bool:
        return all(len(d.get("shape_signature", [])) and int(d["shape_signature"][0]) == -1
                   for d in self.inputs)

    def resize_batch(self, batch: int) -> None:
        for d in self.inputs:
            shape = [int(s) for s in d["shape"]]
            self.it.resize_tensor_input(d["index"], [batch] + shape[1:])
        self.it.allocate_tensors()
        self.inputs = self.it.get_input_details()
        self.outputs = self.it.get_output_details()


class _NumpyEngine:
    def __init__(self, model_path, keep_all: bool, src: str | None):
        if src and src not in sys.path:
            sys.path.insert(0, src)
        from npmobilebert.interpreter import Interpreter
        from npmobilebert.model import load_model
        self.version = "npmobilebert (NumPy interpreter)"
        self.model = load_model(model_path)
        self.interp = Interpreter(self.model)
        self.keep_all = keep_all
        self.names = [self.model.tensors[i].name for i in self.model.inputs]

    def run(self, arrays):
        if self.keep_all:
            return self.interp.run_all(arrays)      # every intermediate kept (as verify does)
        return self.interp.run(arrays)

    def batch_size_allowed(self) -> bool:
        return False


def _numpy_batch_throughput(eng: _NumpyEngine, inputs: list, batch: int, runs: int) -> dict:
    """The NumPy interpreter's throughput on ``batch`` inputs at a time (Interpreter.run_batch,
    the way eval/classify run datasets): tweets per second and the median time per tweet of at
    least three timed batches, after one untimed."""
    import numpy as np

    chunk = [inputs[j % len(inputs)] for j in range(batch)]
    eng.interp.run_batch(chunk)
    times = []
    for _ in range(max(3, runs // batch)):
        t = time.perf_counter()
        eng.interp.run_batch(chunk)
        times.append(time.perf_counter() - t)
    return {"tweets_per_s": len(times) * batch / sum(times),
            "batch_ms_per_tweet": float(np.median(times)) / batch * 1e3,
            "throughput_mode": f"run_batch x{batch}"}


def _import_engine(module_name: str, src: str | None) -> None:
    """Import the engine's modules before the clock starts, so open_s is the model's alone."""
    if module_name == "npmobilebert":
        if src and src not in sys.path:
            sys.path.insert(0, src)
        import npmobilebert.interpreter  # noqa: F401
        import npmobilebert.model  # noqa: F401
    else:
        importlib.import_module(module_name + ".interpreter")


def measure(spec: dict) -> dict:
    engine, model_path, threads = spec["engine"], spec["model"], int(spec["threads"])
    warmup, runs = int(spec["warmup"]), int(spec["runs"])
    if engine not in ENGINES:
        return {"status": "error", "reason": f"unknown engine {engine}"}
    module_name, resolver = ENGINES[engine]
    blas = _limit_blas_threads(threads)
    import numpy as np

    try:
        _import_engine(module_name, spec.get("src"))
    except ImportError as e:
        return {"status": "not supported", "reason": f"{module_name} is not installed here ({e})"}
    rss_before_open = _rss_mb()
    t0 = time.perf_counter()       # open_s: opening and preparing the model, imports done
    try:
        if module_name == "npmobilebert":
            eng = _NumpyEngine(model_path, engine == "numpy-trace", spec.get("src"))
        else:
            eng = _TFLiteEngine(module_name, resolver, model_path, threads)
    except ImportError as e:
        return {"status": "not supported", "reason": f"{module_name} is not installed here ({e})"}
    except Exception as e:  # noqa: BLE001 - a model the engine cannot load: say so, go on
        return {"status": "cannot load", "reason": " ".join(f"{type(e).__name__}: {e}".split())[:300]}
    open_s = time.perf_counter() - t0

    with np.load(spec["inputs"]) as z:
        sets = {}
        for set_name in ("real", "padded"):
            stacked = [z[f"{set_name}/{name}"] for name in eng.names]
            sets[set_name] = [[a[k] for a in stacked] for k in range(len(stacked[0]))]
        lengths = z["real_lengths"].tolist() if "real_lengths" in z.files else []

    result = {"status": "ok", "engine": engine, "runtime": eng.version, "threads": threads,
              "blas_threads": blas if module_name == "npmobilebert" else None,
              "open_s": open_s, "warmup": warmup, "runs": runs,
              "rss_before_open_mb": rss_before_open}
    try:
        for set_name, inputs in sets.items():
            n = len(inputs)
            for w in range(warmup):
                eng.run(inputs[w % n])
            times = []
            for r in range(runs):
                a = inputs[r % n]
                t = time.perf_counter()
                eng.run(a)
                times.append(time.perf_counter() - t)
            stats = _percentiles(times)
            if set_name == "real":
                result.update(stats)
                result["total_s"] = float(sum(times))
                result["mean_tokens"] = (float(np.mean([lengths[r % len(lengths)] for r in range(runs)]))
                                         if lengths else None)
            else:
                result["padded"] = stats
        # throughput: batched where the model's batch dimension is free, else one tweet at a time
        batch = int(spec.get("batch") or 0)
        if batch > 1 and engine == "numpy":
            result.update(_numpy_batch_throughput(eng, sets["real"], batch, runs))
        elif batch > 1 and eng.batch_size_allowed():
            eng.resize_batch(batch)
            inputs = sets["real"]
            batched = [np.concatenate([inputs[j % len(inputs)][i] for j in range(batch)], axis=0)
                       for i in range(len(eng.names))]
            eng.run(batched)
            nb = max(1, runs // batch)
            t = time.perf_counter()
            for _ in range(nb):
                eng.run(batched)
            result["tweets_per_s"] = nb * batch / (time.perf_counter() - t)
            result["throughput_mode"] = f"batched x{batch}"
        else:
            result["tweets_per_s"] = runs / result["total_s"]
            result["throughput_mode"] = "sequential" + (
                " (batch dim fixed)" if batch > 1 else "")
    except Exception as e:  # noqa: BLE001
        return {"status": "error", "reason": " ".join(f"{type(e).__name__}: {e}".split())[:300]}
    result["peak_rss_mb"] = _rss_mb()
    result["python"] = platform.python_version()
    return result


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        argv = argv[1:]
    if len(argv) != 1:
        print("usage: bench_worker.py SPEC.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        spec = json.load(f)
    # the protocol line goes to the real stdout; whatever the runtimes print goes to stderr
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        result = measure(spec)
    except Exception as e:  # noqa: BLE001
        result = {"status": "error", "reason": " ".join(f"{type(e).__name__}: {e}".split())[:300]}
    proto.write(json.dumps(result) + "\n")
    proto.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
