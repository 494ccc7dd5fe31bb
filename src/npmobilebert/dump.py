"""The device workflow: dump every tensor of a LiteRT run on the board, verify it on the host.

On the device (LiteRT or tflite-runtime, numpy; no TensorFlow, no tokenizers when ids are given)::

    npmobilebert dump -m model.tflite --random 5 --out run.npz

On the host, the NumPy interpreter recomputes every tensor from the stored inputs::

    npmobilebert verify -m model.tflite --against run.npz

The dump (an ``.npz`` that ``np.load`` reads without pickles, written atomically):

* one run: ``<tensor name>`` for every tensor the graph computes (its inputs and every op
  output; constants are the model file itself and are not repeated) and ``__input__/<input
  name>`` for the arrays that were fed in;
* several runs (``--random N``, repeated ``--text``/``--ids``): the same keys under ``run<k>/``
  (``run0/...``, ``run1/...``), all in one file;
* ``__meta__``: a 0-d unicode array holding JSON -- format, runtime name and version, resolver,
  threads, the model's file name, size and sha256, machine, CPU (from /proc/cpuinfo), the
  emulator when emulated (device.py), Python, the run prefixes, and
  ``tensors`` (key -> tensor index; a name that two tensors share gets ``#<index>`` appended).

``verify`` refuses a dump of another model (sha256 mismatch, exit 2).  Against a dump made with
the ``ref`` resolver (or ``tflm``: TensorFlow Lite Micro, recomputed with the ``tflm`` numerics
profile) it exits 0 only when every tensor is bit-identical and 1 naming the first divergent
tensor; against ``builtin``/``default`` dumps (optimized arithmetic, different by design) it
reports the same comparison and exits 0 when every label agrees, as ``verify`` does.

Caveat: tflite-runtime 2.14 in process (a board without ai-edge-litert) lets in-place kernels
overwrite some intermediates even with preserve_all_tensors (see runtime.py); where
ai-edge-litert's schema module is missing the model cannot be rewritten to prevent it, so such
a dump may show false divergences in intermediates (its graph outputs are always right).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
import zipfile
from typing import Iterable, Sequence

import numpy as np

from .device import EMULATOR_ENV, this_cpu
from .errors import InputError, escape_text

DUMP_FORMAT = "npmobilebert-dump/1"
META_KEY = "__meta__"
INPUT_PREFIX = "__input__/"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tensor_keys(model) -> dict[int, str]:
    """Tensor index -> dump key for every tensor the graph computes (inputs, op outputs), in run order.

    The key is the tensor's name; a name shared by several tensors gets ``#<index>`` appended."""
    order = list(model.inputs) + [i for op in model.operators for i in op.outputs if i >= 0]
    return unique_keys(model, order)


def unique_keys(model, indices: Iterable[int]) -> dict[int, str]:
    """Tensor index -> a key naming it alone among ``indices``: its name, with ``#<index>``
    appended when several of them share it (or it is empty, or it is the metadata's key)."""
    order = list(dict.fromkeys(indices))
    counts: dict[str, int] = {}
    for i in order:
        counts[model.tensors[i].name] = counts.get(model.tensors[i].name, 0) + 1
    keys = {}
    for i in order:
        name = model.tensors[i].name or f"tensor{i}"
        keys[i] = name if counts[model.tensors[i].name] == 1 and name != META_KEY else f"{name}#{i}"
    return keys


def _prefixes(n: int) -> list[str]:
    return [""] if n == 1 else [f"run{k}/" for k in range(n)]


def dump_runs(model_path: str, inputs_list: Sequence[list[np.ndarray]], out_path: str,
              resolver: str = "ref", threads: int = 1, seed: int | None = None,
              progress=None) -> dict:
    """Run LiteRT (or, with ``resolver="tflm"``, TensorFlow Lite Micro) on every input set and
    write every computed tensor to ``out_path``; the metadata."""
    from .fileio import atomic_path
    from .model import load_model
    from .runtime import LiteRTRunner, TFLMRunner, runtime_name

    if not inputs_list:
        raise InputError("nothing to dump: give --random N, --text or --ids")
    model = load_model(model_path)
    keys = tensor_keys(model)
    input_names = [model.tensors[i].name for i in model.inputs]
    runner = (TFLMRunner(model_path) if resolver == "tflm"
              else LiteRTRunner(model_path, resolver=resolver, num_threads=threads))
    prefixes = _prefixes(len(inputs_list))
    meta = {
        "format": DUMP_FORMAT, "runtime": getattr(runner, "name", None) or runtime_name(),
        "resolver": resolver, "threads": int(threads), "seed": seed,
        "model_file": os.path.basename(model_path), "model_bytes": os.path.getsize(model_path),
        "model_sha256": sha256_file(model_path),
        "machine": platform.machine(), "system": platform.system(),
        "python": platform.python_version(), "numpy": np.__version__,
        "cpu": this_cpu(), "emulator": os.environ.get(EMULATOR_ENV),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": len(inputs_list), "prefixes": prefixes,
        "inputs": input_names, "tensors": {key: i for i, key in keys.items()},
    }
    with atomic_path(out_path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            def put(key, value):
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)

            missing: set[str] = set()
            for k, (prefix, arrays) in enumerate(zip(prefixes, inputs_list)):
                bound = runner._bind(list(arrays))   # the arrays exactly as LiteRT gets them
                values = runner.run_all(bound)
                for name, arr in zip(input_names, bound):
                    put(prefix + INPUT_PREFIX + name, arr)
                for i, key in keys.items():
                    if i in values:
                        put(prefix + key, values[i])
                    else:
                        missing.add(key)
                if progress is not None:
                    progress(k + 1)
            meta["not_readable"] = sorted(missing)
            put(META_KEY, np.array(json.dumps(meta)))
    return meta


# ------------------------------------------------------------------------------------------------
# the host side


class Dump:
    """An opened dump: metadata and lazy access to its arrays."""

    def __init__(self, path: str):
        self.path = path
        try:
            with open(path, "rb") as f:
                magic = f.read(4)
            # np.load reads anything that is neither a zip nor an .npy as a pickle, refuses it and
            # suggests allow_pickle=True: never the advice for a file that is not a dump at all
            if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
                raise InputError(f"{path}: not a readable .npz dump (not a zip archive; "
                                 "'npmobilebert dump' writes one)")
            self._z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:   # EOFError: an empty file
            raise InputError(f"{path}: not a readable .npz dump ({' '.join(str(e).split())})") from None
        if not hasattr(self._z, "files") or META_KEY not in self._z.files:
            raise InputError(f"{path}: not an npmobilebert dump (no {META_KEY} entry; "
                             f"make one with 'npmobilebert dump')")
        self.files = set(self._z.files)
        try:
            self.meta = json.loads(str(self.get(META_KEY)[()]))
        except (ValueError, TypeError) as e:
            raise InputError(f"{path}: its {META_KEY} entry is not JSON ({e})") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != DUMP_FORMAT:
            raise InputError(f"{path}: unknown dump format {self.meta.get('format') if isinstance(self.meta, dict) else None!r}"
                             f" (this version reads {DUMP_FORMAT})")

    def get(self, key: str) -> np.ndarray | None:
        if key not in self.files:
            return None
        try:
            self._check_size(key)
            return self._z[key]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:   # a damaged member
            raise InputError(f"{self.path}: its entry {escape_text(key)} is not readable "
                             f"({' '.join(str(e).split())})") from None

    def _check_size(self, key: str) -> None:
        """Refuse an entry whose .npy header declares more data than the entry holds, before
        NumPy allocates what the header declares (2^40 elements in a few bytes)."""
        try:
            info = self._z.zip.getinfo(key + ".npy")
        except KeyError:
            raise ValueError("not a .npy entry") from None
        with self._z.zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(member)
        declared = math.prod(int(d) for d in shape) * dtype.itemsize
        if declared > info.file_size:
            raise ValueError(f"its header declares shape {list(shape)} of {dtype}, {declared:,} bytes, "
                             f"in an entry of {info.file_size:,} bytes")

    def close(self) -> None:
        self._z.close()


class DumpReplay:
    """A runner (``run_all``) that hands back the dumped runs one after the other."""

    def __init__(self, dump: Dump, model):
        self.dump = dump
        meta = dump.meta
        self.name = (f"{meta.get('runtime', 'unknown runtime')} (dump {os.path.basename(dump.path)}, "
                     f"{meta.get('machine', '?')})")
        self.note = ""
        prefixes = meta.get("prefixes") or [""]
        tensors = meta.get("tensors") or {}
        if not (isinstance(prefixes, list) and all(isinstance(p, str) for p in prefixes)):
            raise InputError(f"{dump.path}: its metadata's 'prefixes' is not a list of strings")
        if not (isinstance(tensors, dict) and all(type(v) is int for v in tensors.values())):
            raise InputError(f"{dump.path}: its metadata's 'tensors' does not map names to tensor indices")
        self.prefixes = prefixes
        self.index_of = dict(tensors)
        for key, i in self.index_of.items():
            if not 0 <= i < len(model.tensors) or key.split("#")[0] != (model.tensors[i].name or f"tensor{i}"):
                raise InputError(f"{dump.path}: tensor '{escape_text(key)}' does not match tensor {i} of the model")
        self._next = 0

    def inputs(self, model) -> list[dict[str, np.ndarray]]:
        names = [model.tensors[i].name for i in model.inputs]
        out = []
        for prefix in self.prefixes:
            arrays = {}
            for name in names:
                value = self.dump.get(prefix + INPUT_PREFIX + name)
                if value is None:
                    raise InputError(f"{self.dump.path}: no stored input '{prefix}{INPUT_PREFIX}{name}'")
                arrays[name] = value
            out.append(arrays)
        return out

    def run_all(self, _arrays) -> dict[int, np.ndarray]:
        prefix = self.prefixes[self._next]
        self._next += 1
        out = {}
        for key, i in self.index_of.items():
            value = self.dump.get(prefix + key)
            if value is not None:
                out[i] = value
        return out


def verify_dump(model, dump_path: str, progress=None, numerics: str | None = None):
    """Recompute every run of a dump with the NumPy interpreter; a verify.VerifyReport.

    ``numerics``: the profile to recompute with (default: the one reproducing the dump's
    resolver, e.g. tflm for a TensorFlow Lite Micro dump). Raises InputError (exit 2) when the
    dump is of another model or is not a dump."""
    from .interpreter import Interpreter
    from .numerics import profile_for_runtime
    from .verify import verify

    dump = Dump(dump_path)
    meta = dump.meta
    if model.path is None:
        raise InputError("verifying a dump needs the model file")
    sha = sha256_file(model.path)
    if meta.get("model_sha256") != sha:
        raise InputError(
            f"{dump_path} was dumped from another model: {meta.get('model_file')} (sha256 "
            f"{str(meta.get('model_sha256'))[:12]}...), not {os.path.basename(model.path)} "
            f"(sha256 {sha[:12]}...); pass the model the dump was made with")
    resolver = str(meta.get("resolver", "ref"))
    # the profile of what ran: resolver, machine (aarch64 kernels differ) and LiteRT version
    profile = numerics or profile_for_runtime(resolver, meta.get("machine"), str(meta.get("runtime", "")))
    interp = Interpreter(model, numerics=profile)
    replay = DumpReplay(dump, model)
    inputs = replay.inputs(model)
    try:
        report = verify(model, interp, replay, inputs, resolver, progress=progress)
    finally:
        dump.close()
    report.note = (f"recomputed from {dump_path}: {meta.get('runs')} run(s) of "
                   f"{meta.get('runtime')} on {meta.get('system', '?')} {meta.get('machine', '?')}, "
                   f"'{meta.get('resolver')}' resolver, {meta.get('threads')} thread(s)")
    return report


def random_inputs(maker, n: int, seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [maker.random(rng).arrays for _ in range(n)]


def parse_ids_list(values: Iterable[str]) -> list[list[int]]:
    out = []
    for text in values:
        try:
            out.append([int(tok) for tok in text.replace(",", " ").split()])
        except ValueError:
            raise InputError(f"--ids takes whole numbers separated by spaces or commas, got '{text}'") from None
    return out


if __name__ == "__main__":  # pragma: no cover - python -m npmobilebert.dump == npmobilebert dump
    from .cli import entry

    sys.argv.insert(1, "dump")
    entry()
