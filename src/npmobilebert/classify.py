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
import io
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError, NpMobileBertError
from .fileio import first_bad_byte
from .shipped import default_model_path
from .model import _read_file as read_model_file

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


def read_tsv(path: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (line number, fields) of every non-blank row of a tab-separated file.

    A file as ``csv.writer(f, delimiter="\\t")`` writes it -- a field holding a tab, a quote or a
    line break is quoted, its quotes doubled -- is read as the csv module reads it. A file that
    is not valid in that form (a text starting with a quote it never closes, ``"great" service``)
    is read as plain lines split at tabs, as such files are written. A UTF-8 byte order mark
    is not part of the header. Bytes that are not UTF-8 are an :class:`InputError`.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            content = f.read()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text ({first_bad_byte(path)})") from None
    records = _csv_records(content)
    if records is None:
        records = [(k, line.rstrip("\r").split("\t"))
                   for k, line in enumerate(content.split("\n"), start=1)]
    records = [(k, fields) for k, fields in records if any(field.strip() for field in fields)]
    if not records:
        return [], []
    return records[0][1], records[1:]


def _csv_records(content: str) -> list[tuple[int, list[str]]] | None:
    """The records of ``content`` read as csv.writer writes a TSV, or None when it is not one
    (quotes that do not follow its rules, rows with another number of fields than the header)."""
    if '"' not in content:
        return None                 # nothing quoted: plain lines say the same, faster
    records = []
    reader = csv.reader(io.StringIO(content), delimiter="\t", strict=True)
    try:
        line = 1
        for fields in reader:
            records.append((line, fields))
            line = reader.line_num + 1
    except csv.Error:
        return None
    widths = {len(fields) for _, fields in records if fields}
    return records if len(widths) == 1 else None


def read_labelled_tsv(path: str, limit: int | None = None) -> list[LabelledRow]:
    """Rows of a TSV whose header has at least ``label`` and ``text`` (other columns are ignored).

    Bad input -- a missing column, a row with too few fields, an empty label or text, bytes that
    are not UTF-8 -- is an :class:`InputError` naming the file and line.
    """
    header, records = read_tsv(path)
    missing = [c for c in ("label", "text") if c not in header]
    if missing:
        raise InputError(f"{path}: the header has no {' and no '.join(repr(c) for c in missing)} "
                         f"column (a TSV with a header naming at least 'label' and 'text')")
    li, ti = header.index("label"), header.index("text")
    rows: list[LabelledRow] = []
    for k, fields in records:
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
    """One model opened for one engine, in this process: texts -> logits.

    Made from the bytes of the model file, read once by the parent: the workers run exactly the
    model the parent checked, even when the file is removed or rewritten meanwhile."""

    def __init__(self, model_path: str, engine: str, content: bytes | None = None):
        import dataclasses

        from .inputs import InputMaker, model_labels
        from .model import load_model

        if content is None:
            content = read_model_file(model_path)
        self.model = dataclasses.replace(load_model(content), path=model_path)
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
            runner = LiteRTRunner(content, resolver=_RESOLVER[engine], num_threads=1,
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


# The worker processes' engine (one per process, made by _init_worker), or why it could not be made.
_WORKER: _Engine | None = None
_WORKER_ERROR: BaseException | None = None


def _init_worker(content: bytes, model_path: str, engine: str) -> None:
    """Open the engine in a worker process. A failure to open it is kept and raised by the first
    task, so that it reaches the parent as that task's exception (an initializer that raises
    would log a traceback and break the pool without saying why)."""
    global _WORKER, _WORKER_ERROR
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        _WORKER = _Engine(model_path, engine, content)
    except Exception as e:  # noqa: BLE001 - handed to the parent, which reports it
        _WORKER_ERROR = e


def _exit_with_parent(parent: int) -> None:
    """End this worker once its parent is gone (killed by SIGKILL or SIGTERM, it could not stop
    the pool): the workers share the task queue, so none would ever see it close."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _work(chunk: tuple[int, list[str]]) -> tuple[int, np.ndarray, int]:
    if _WORKER is None:
        raise _WORKER_ERROR if _WORKER_ERROR is not None else NpMobileBertError("the worker has no engine")
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
    if engine not in ENGINES:
        raise InputError(f"unknown engine '{engine}': choose one of {', '.join(ENGINES)}")
    t0 = time.perf_counter()
    content = read_model_file(model_path)
    local = _Engine(model_path, engine, content)   # checks the model before any worker starts
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
    out = np.empty((len(texts), len(local.labels)), dtype=np.float64)
    truncated = 0
    with contextlib.closing(_pool_map(content, model_path, engine, processes, texts)) as results:
        for start, logits, trunc in results:
            out[start:start + len(logits)] = logits
            truncated += trunc
            if progress:
                progress(len(logits))
    return Predictions(local.labels, out, truncated, time.perf_counter() - t0, processes)


def _pool_map(content: bytes, model_path: str, engine: str, processes: int, texts: Sequence[str]):
    """(start, logits, truncated) of every chunk of texts, computed by a pool of worker processes.

    A worker that dies (SIGKILL from the out-of-memory killer) or fails is an error of the
    command, not a hang: concurrent.futures marks the pool broken and every pending chunk fails,
    where multiprocessing.Pool would replace the worker and wait for the lost chunk for ever.
    The workers are spawned with SIGINT blocked: Ctrl-C interrupts the parent alone, which
    stops them; none prints a traceback of its own.
    """
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    chunks = [(start, list(texts[start:start + CHUNK])) for start in range(0, len(texts), CHUNK)]
    # Every process of the pool is started in this block (multiprocessing's resource tracker by
    # the constructor, the workers by the submits), so with its SIGINT mask (inherited across
    # fork and exec), environment (read when NumPy loads), stdout and stderr: they never print,
    # from their start (a parent killed while a worker reads its start-up data would make it
    # print a traceback, the tracker a warning) to LiteRT's C++ logging.
    executor = None
    try:
        with environment(SINGLE_THREADED_BLAS), _output_to_devnull():
            # spawn, not fork: a forked LiteRT/XNNPACK or tokenizers thread pool is not safe.
            executor = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_init_worker, initargs=(content, model_path, engine))
            # after the constructor: starting the resource tracker unblocks SIGINT when done
            with _sigint_deferred():
                futures = [executor.submit(_work, chunk) for chunk in chunks]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                yield future.result()
    except BrokenProcessPool:
        raise NpMobileBertError(f"a worker process of the {engine} engine ended abruptly (killed, "
                                "e.g. by the out-of-memory killer): no result for some texts") from None
    finally:
        if executor is not None:
            _stop(executor)


@contextlib.contextmanager
def _output_to_devnull():
    """File descriptors 1 and 2 on /dev/null for the block (the processes it starts inherit
    them), then back where they were."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    saved = {}
    for fd in (1, 2):
        with contextlib.suppress(OSError):      # a closed descriptor stays closed
            saved[fd] = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in saved:
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


@contextlib.contextmanager
def _sigint_deferred():
    """SIGINT blocked in this thread, so that the processes it spawns start with it blocked (the
    mask is inherited across fork and exec); and a Ctrl-C meanwhile deferred to the end of the
    block: the kernel may deliver it to another thread, and Python would then raise
    KeyboardInterrupt here anyway -- between a worker's start and its registration in the
    pool, leaving a worker nobody stops."""
    received: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except ValueError:      # not the main thread: signals are the main thread's to handle
        previous = None
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            if received and callable(previous):
                previous(signal.SIGINT, None)       # the default handler raises KeyboardInterrupt
            elif received and previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


def _stop(executor) -> None:
    """End the pool now: pending chunks cancelled, running ones abandoned, workers terminated
    and reaped (none is left behind, whether the pool finished, failed or was interrupted)."""
    # the worker processes: concurrent.futures has no public handle on them before Python 3.14
    workers = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.terminate()
    for process in workers:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()
    # Wait for the pool's manager thread to see its workers gone and close its wake-up pipe:
    # left running, it may close that pipe while the interpreter's exit handler writes to it
    # (concurrent.futures' _python_exit, a race CPython fixed in 3.12), which prints a
    # traceback after our one line.
    manager = getattr(executor, "_executor_manager_thread", None)
    if manager is not None:
        manager.join(timeout=5)
        # and take the pool out of that handler's list: with the pool stopped there is nothing
        # left for it to wake, and the race still showed once after the join (on Ctrl-C)
        from concurrent.futures import process as futures_process
        getattr(futures_process, "_threads_wakeups", {}).pop(manager, None)


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


def reading_warnings(model_path: str, texts: Sequence[str]) -> list[str | None]:
    """Per text, why the model is unlikely to read it well (text.reading_warning: mostly [UNK],
    mostly non-Latin letters, mostly words outside the vocab), or None. Never changes a label."""
    from .inputs import InputMaker
    from .model import load_model

    tokenizer = InputMaker(load_model(model_path)).tokenizer
    return [tokenizer.reading_warning(t) for t in texts]


# -- the Python API: npmobilebert.Classifier / npmobilebert.classify -------------------------------

@dataclass(eq=False)      # an ndarray field: == of two results would be ambiguous
class Classification:
    """One text's answer: its label, the probability of every label, and the logits."""
    text: str
    label: str                       # the most probable label
    probabilities: dict[str, float]  # label -> softmax of the logits, in the model's label order
    logits: np.ndarray               # float64 [classes] (dequantized when the output is quantized)
    truncated: bool                  # longer than the model's sequence length: its end was not read
    # why the answer may mean little (mostly [UNK] tokens, or another language: the model reads
    # English), from text.reading_warning; None when the text looks like English the vocab covers
    warning: str | None = None


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
                               bool(tokenizer.encode(text, warn=False).truncated), tokenizer.reading_warning(text))
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
