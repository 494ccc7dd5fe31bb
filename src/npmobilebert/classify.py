"""Classify texts with a model, and evaluate it on a labelled TSV (``npmobilebert classify | eval``).

Engines: ``numpy`` (our interpreter), ``litert`` (LiteRT with XNNPACK, its default delegate)
and ``litert-ref`` (LiteRT's reference kernels: bit-identical to ``numpy``). On large inputs
each engine runs in a pool of worker processes, one per core, each single-threaded.
The class probabilities are the softmax of the float logits; an int8/int16 output is
dequantized first (``scale * (q - zero_point)``).
"""

from __future__ import annotations

import contextlib
import csv
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .fileio import first_bad_byte
from .shipped import default_model_path

ENGINES = ("litert", "litert-ref", "numpy")
_RESOLVER = {"litert": "default", "litert-ref": "ref"}
# Below this many texts a worker pool costs more (process start, model load) than it saves.
POOL_MIN_TEXTS = 256
CHUNK = 32
# A pool has a worker per core already: each worker's BLAS must not start a thread per core too.
# (OpenBLAS threads spin while they wait: 2 workers x 2 threads on 2 cores made `eval --engine
# numpy` several times slower than one process.) Spawned workers read these when NumPy loads.
SINGLE_THREADED_BLAS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class LabelledRow:
    line: int       # line number in the file (the header is line 1)
    label: str
    text: str


def read_labelled_tsv(path: str, limit: int | None = None) -> list[LabelledRow]:
    """Rows of a TSV whose header has at least ``label`` and ``text`` (other columns are ignored).

    Bad input -- a missing column, a row with too few fields, an empty label or text, bytes that
    are not UTF-8 -- is an :class:`InputError` naming the file and line.
    """
    rows: list[LabelledRow] = []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            header = f.readline().rstrip("\r\n").split("\t")
            missing = [c for c in ("label", "text") if c not in header]
            if missing:
                raise InputError(f"{path}: the header has no {' and no '.join(repr(c) for c in missing)} "
                                 f"column (a TSV with a header naming at least 'label' and 'text')")
            li, ti = header.index("label"), header.index("text")
            for k, line in enumerate(f, start=2):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) < len(header):
                    raise InputError(f"{path}, line {k}: {len(fields)} tab-separated fields, "
                                     f"the header has {len(header)}")
                label, text = fields[li].strip(), fields[ti]
                if not label:
                    raise InputError(f"{path}, line {k}: empty label")
                if not text.strip():
                    raise InputError(f"{path}, line {k}: empty text")
                rows.append(LabelledRow(k, label, text))
                if limit and len(rows) >= limit:
                    break
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text ({first_bad_byte(path)})") from None
    except csv.Error as e:  # pragma: no cover - kept for symmetry with read_texts
        raise InputError(f"{path}: not a readable TSV ({e})") from None
    if not rows:
        raise InputError(f"{path}: no labelled rows")
    return rows


def map_labels(rows: Sequence[LabelledRow], model_labels: Sequence[str], path: str) -> list[str]:
    """The gold labels as the model's own label names (matched case-insensitively)."""
    by_lower = {name.lower(): name for name in model_labels}
    gold = []
    for row in rows:
        name = by_lower.get(row.label.lower())
        if name is None:
            raise InputError(f"{path}, line {row.line}: label '{row.label}' is not one of the model's "
                             f"labels ({', '.join(model_labels)})")
        gold.append(name)
    return gold


# -- the model side --------------------------------------------------------------------------------

def output_info(model) -> tuple[int, float | None, int]:
    """(position of the logits among the model outputs, scale or None when float, zero point)."""
    from .inputs import model_labels

    labels = model_labels(model)
    if not labels:
        raise InputError(f"{model.path}: the model has no class labels in its metadata "
                         "(the 'npmobilebert' entry): it cannot classify")
    for pos, index in enumerate(model.outputs):
        t = model.tensors[index]
        if t.shape and t.shape[-1] == len(labels) and int(np.prod(t.shape)) == len(labels):
            if np.issubdtype(t.dtype, np.floating):
                return pos, None, 0
            if t.quantization is not None and np.issubdtype(t.dtype, np.integer):
                return pos, t.quantization.scale, t.quantization.zero_point
    raise InputError(f"{model.path}: no output of {len(labels)} float or quantized values "
                     f"(one per label: {', '.join(labels)})")


def to_logits(out: np.ndarray, scale: float | None, zero_point: int) -> np.ndarray:
    flat = np.asarray(out).reshape(-1)
    if scale is None:
        return flat.astype(np.float64)
    return scale * (flat.astype(np.float64) - zero_point)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class _Engine:
    """One model opened for one engine, in this process: texts -> logits."""

    def __init__(self, model_path: str, engine: str):
        from .inputs import InputMaker, model_labels
        from .model import load_model

        self.model = load_model(model_path)
        self.labels = model_labels(self.model) or []
        self.pos, self.scale, self.zero_point = output_info(self.model)
        self.maker = InputMaker(self.model)
        self.maker.tokenizer      # the vocab and input checks now, before any text
        self.truncated = 0
        self._run_batch = None
        if engine == "numpy":
            from .interpreter import Interpreter
            interp = Interpreter(self.model)
            self._run = interp.run
            self._run_batch = interp.run_batch      # a chunk's texts together, memory-bounded
            self.batch_size = interp.batch_size(CHUNK)
        else:
            from .runtime import LiteRTRunner
            runner = LiteRTRunner(model_path, resolver=_RESOLVER[engine], num_threads=1,
                                  preserve_all_tensors=False)
            self._run = runner.run

    def arrays(self, text: str) -> list[np.ndarray]:
        enc = self.maker.tokenizer.encode(text, warn=False)
        self.truncated += int(enc.truncated)
        n = int(enc.attention_mask.sum())
        return self.maker._assemble(enc.input_ids[0, :n].tolist()).arrays

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), len(self.labels)), dtype=np.float64)
        if self._run_batch is not None and len(texts) > 1:
            for start in range(0, len(texts), self.batch_size):
                batch = [self.arrays(text) for text in texts[start:start + self.batch_size]]
                for k, outputs in enumerate(self._run_batch(batch), start=start):
                    out[k] = to_logits(outputs[self.pos], self.scale, self.zero_point)
            return out
        for k, text in enumerate(texts):
            out[k] = to_logits(self._run(self.arrays(text))[self.pos], self.scale, self.zero_point)
        return out


# The worker processes' engine (one per process, made by _init_worker).
_WORKER: _Engine | None = None


def _init_worker(model_path: str, engine: str) -> None:
    global _WORKER
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _WORKER = _Engine(model_path, engine)


def _work(chunk: tuple[int, list[str]]) -> tuple[int, np.ndarray, int]:
    start, texts = chunk
    before = _WORKER.truncated
    return start, _WORKER.logits(texts), _WORKER.truncated - before


@dataclass
class Predictions:
    labels: list[str]        # the model's label names, in output order
    logits: np.ndarray       # float64 [n, classes] (dequantized when the output is quantized)
    truncated: int           # texts longer than the model's sequence length
    seconds: float
    processes: int

    @property
    def probabilities(self) -> np.ndarray:
        return softmax(self.logits)

    @property
    def predicted(self) -> list[str]:
        return [self.labels[k] for k in np.argmax(self.logits, axis=1)]


def predict(model_path: str, texts: Sequence[str], engine: str = "litert", processes: int | None = None,
            progress: Callable[[int], None] | None = None) -> Predictions:
    """Logits of every text. ``processes``: worker processes, each with its own model and engine
    (default: one per core when there are at least POOL_MIN_TEXTS texts, else none)."""
    import time

    if engine not in ENGINES:
        raise InputError(f"unknown engine '{engine}': choose one of {', '.join(ENGINES)}")
    t0 = time.perf_counter()
    local = _Engine(model_path, engine)   # checks the model before any worker starts
    if processes is None:
        processes = (os.cpu_count() or 1) if len(texts) >= POOL_MIN_TEXTS else 1
    processes = max(1, min(processes, math.ceil(len(texts) / CHUNK)))
    if processes == 1:
        out = np.empty((len(texts), len(local.labels)), dtype=np.float64)
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start:start + CHUNK]
            out[start:start + len(chunk)] = local.logits(chunk)
            if progress:
                progress(len(chunk))
        return Predictions(local.labels, out, local.truncated, time.perf_counter() - t0, 1)
    chunks = [(start, list(texts[start:start + CHUNK])) for start in range(0, len(texts), CHUNK)]
    out = np.empty((len(texts), len(local.labels)), dtype=np.float64)
    truncated = 0
    # spawn, not fork: a forked LiteRT/XNNPACK or tokenizers thread pool is not safe.
    ctx = multiprocessing.get_context("spawn")
    with environment(SINGLE_THREADED_BLAS):                 # inherited by the workers it spawns
        pool = ctx.Pool(processes, initializer=_init_worker, initargs=(model_path, engine))
    with pool:
        for start, logits, trunc in pool.imap_unordered(_work, chunks):
            out[start:start + len(logits)] = logits
            truncated += trunc
            if progress:
                progress(len(logits))
    return Predictions(local.labels, out, truncated, time.perf_counter() - t0, processes)


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """Set environment variables for the duration of the block, then put back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_classifier(model_path: str) -> list[str]:
    """The model's class labels; an InputError (before any run, so before any progress bar) when
    the file cannot classify: no labels in its metadata, or no output of one value per label."""
    from .inputs import model_labels
    from .model import load_model

    model = load_model(model_path)
    output_info(model)
    return model_labels(model)


def check_model_labels(model_path: str, rows: Sequence[LabelledRow], data_path: str) -> list[str]:
    """The gold labels in the model's names; an InputError (before any run) when they do not map."""
    return map_labels(rows, check_classifier(model_path), data_path)


def evaluate(model_path: str, rows: Sequence[LabelledRow], data_path: str, engine: str = "litert",
             processes: int | None = None, progress: Callable[[int], None] | None = None) -> dict:
    """The metrics report (metrics.classification_report) of one model on labelled rows, with
    the model, engine, seconds and truncation count."""
    from .metrics import classification_report

    gold = check_model_labels(model_path, rows, data_path)
    preds = predict(model_path, [r.text for r in rows], engine, processes, progress)
    report = classification_report(gold, preds.predicted, preds.labels)
    return {"model": str(model_path), "engine": engine, "data": str(data_path), **report,
            "truncated": preds.truncated, "seconds": round(preds.seconds, 3),
            "processes": preds.processes}


# -- the Python API: npmobilebert.Classifier / npmobilebert.classify -------------------------------

@dataclass(eq=False)      # an ndarray field: == of two results would be ambiguous
class Classification:
    """One text's answer: its label, the probability of every label, and the logits."""
    text: str
    label: str                       # the most probable label
    probabilities: dict[str, float]  # label -> softmax of the logits, in the model's label order
    logits: np.ndarray               # float64 [classes] (dequantized when the output is quantized)
    truncated: bool                  # longer than the model's sequence length: its end was not read


class Classifier:
    """A text classifier: a model opened once for one engine.

    ``model``: a .tflite path with class labels in its metadata (default: the shipped tweet
    polarity model). ``engine``: ``litert`` (LiteRT with XNNPACK, as ``npmobilebert classify``),
    ``litert-ref`` (LiteRT's reference kernels) or ``numpy`` (this package's interpreter,
    bit-identical to ``litert-ref``). Bad input raises an ``NpMobileBertError`` (errors.py).
    One thread at a time: the engines keep per-run state.
    """

    def __init__(self, model: str | os.PathLike | None = None, engine: str = "litert"):
        if engine not in ENGINES:
            raise InputError(f"unknown engine '{engine}': choose one of {', '.join(ENGINES)}")
        self.model_path = str(model) if model is not None else str(default_model_path())
        if not os.path.isfile(self.model_path):
            raise InputError(f"{self.model_path}: no such model file")
        self.engine = engine
        self._engine = _Engine(self.model_path, engine)

    @property
    def labels(self) -> list[str]:
        """The model's label names, in output order."""
        return list(self._engine.labels)

    def predict(self, texts: str | Sequence[str], processes: int = 1) -> list[Classification]:
        """One :class:`Classification` per text (a single string is one text).

        Texts longer than the model's sequence length are truncated (``truncated`` says so).
        ``processes`` > 1 runs a pool of worker processes (spawned: a script that asks for it
        must guard its top level with ``if __name__ == "__main__":``).
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        for k, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text {k + 1} is a {type(text).__name__}, not a str")
            if not text.strip():
                raise InputError(f"text {k + 1} is empty")
        if processes > 1:
            logits = predict(self.model_path, texts, self.engine, processes).logits
        else:
            logits = self._engine.logits(texts)
        labels = self.labels
        tokenizer = self._engine.maker.tokenizer
        return [Classification(text, labels[int(np.argmax(z))], dict(zip(labels, map(float, p))), z,
                               bool(tokenizer.encode(text, warn=False).truncated))
                for text, z, p in zip(texts, logits, softmax(logits))]


# The classifiers npmobilebert.classify opened, by (model, engine): a model opens once per process.
_CLASSIFIERS: dict[tuple[str, str], Classifier] = {}


def classify(texts: str | Sequence[str], model: str | os.PathLike | None = None,
             engine: str = "litert") -> list[Classification]:
    """Classify texts with a model (default: the shipped tweet polarity model); see Classifier."""
    path = str(model) if model is not None else str(default_model_path())
    key = (os.path.abspath(path), engine)
    if key not in _CLASSIFIERS:
        _CLASSIFIERS[key] = Classifier(path, engine)
    return _CLASSIFIERS[key].predict(texts)
