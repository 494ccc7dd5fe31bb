"""Convert a Keras MobileBERT classifier to TFLite with the real converter.

Schemes (one converter run each, all from one exported SavedModel):

  float32          plain conversion
  float16          float16 weights (DEQUANTIZE to float32 at load time)
  dynamic          dynamic-range: int8 weights, float activations, no calibration
  int8             full integer, per-channel FC weights, int32 id inputs and float32
                   logits kept (the converter inserts QUANTIZE / DEQUANTIZE)
  int8-per-tensor  as int8, but per-tensor FC weights, as older converters made
  16x8             int16 activations, int8 weights (float fallback allowed: the
                   attention_mask CAST has no 16x8 kernel)

After conversion each model gets a FlatBuffer metadata entry "npmobilebert" (UTF-8
JSON: labels, seq_len, vocab_size, scheme, mask_value, config) and, appended after
the FlatBuffer, a ZIP archive holding vocab.txt and labels.txt — the way TFLite
metadata stores associated files (TFLite ignores trailing bytes).

Example:

  python tools/convert.py --layers 2 --hidden 64 --intra-bottleneck 32 \\
      --intermediate 64 --embedding-size 32 --heads 2 --num-ffn 2 --seq-len 16 \\
      --vocab tests/fixtures/vocab_small.txt --seed 0 --schemes int8,dynamic \\
      --out-dir /tmp/out --name tiny

Also runs under TensorFlow 2.15 (Keras 2, no ai-edge-litert next to its numpy<2): then the
FlatBuffer schema and the interpreter come from TensorFlow itself and build_mobilebert.py maps
the few keras.ops it uses to tf ops.  Older converters make older op versions (and TF 2.15
quantizes Dense weights per-tensor); see tests/fixtures/README.md for the *_tf215 fixtures.

Pitfalls on TF 2.21 / Keras 3 this module works around:
  * ``TFLiteConverter.from_keras_model`` fails on Keras 3 models, and
    ``from_concrete_functions`` leaves Keras 3 variables unfrozen; so the model is
    exported with ``keras.export.ExportArchive`` and converted ``from_saved_model``.
  * The signature's inputs come out in alphabetical order (attention_mask,
    input_ids, token_type_ids); calibration samples are therefore dicts keyed by
    input name, never positional lists.
"""

from __future__ import annotations

import collections
import io
import json
import os
import sys
import tempfile
import time
import zipfile
from dataclasses import fields, replace
from pathlib import Path
from typing import Iterable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_mobilebert import (  # noqa: E402
    CUSTOM_OBJECTS,
    INPUT_NAMES,
    OUTPUT_NAME,
    MobileBertConfig,
    build_trained_like,
)
from builtin_batch_matmul import keep_batch_matmuls_builtin  # noqa: E402
from fold_norms import fold_attention_scale, fold_residual_scales  # noqa: E402

SCHEMES = ("float32", "float16", "dynamic", "int8", "int8-per-tensor", "16x8")
METADATA_NAME = "npmobilebert"
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 100, 101, 102, 103


# --------------------------------------------------------------------------- vocab / labels


def default_labels(num_labels: int) -> list[str]:
    if num_labels == 3:
        return ["negative", "neutral", "positive"]
    return [f"label_{i}" for i in range(num_labels)]


def synthetic_vocab(vocab_size: int) -> list[str]:
    """BERT-layout placeholder vocab: specials at 0/100..103, [unusedN] and tokN elsewhere."""
    if vocab_size < 104:
        raise ValueError("a BERT-style vocab needs at least 104 entries")
    vocab = [f"[unused{i}]" for i in range(104)]
    vocab[PAD_ID], vocab[UNK_ID], vocab[CLS_ID] = "[PAD]", "[UNK]", "[CLS]"
    vocab[SEP_ID], vocab[MASK_ID] = "[SEP]", "[MASK]"
    vocab[1:UNK_ID] = [f"[unused{i}]" for i in range(UNK_ID - 1)]
    vocab += [f"tok{i}" for i in range(vocab_size - 104)]
    return vocab


def read_lines(path: str | os.PathLike) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


# --------------------------------------------------------------------------- calibration


def ids_to_sample(ids: Iterable[int], seq_len: int) -> dict[str, np.ndarray]:
    """One token-id list -> the three [1, seq_len] int32 inputs (truncated / zero padded)."""
    ids = list(ids)[:seq_len]
    row = np.zeros(seq_len, np.int32)
    row[: len(ids)] = ids
    mask = np.zeros(seq_len, np.int32)
    mask[: len(ids)] = 1
    return {
        "input_ids": row[None],
        "attention_mask": mask[None],
        "token_type_ids": np.zeros((1, seq_len), np.int32),
    }


def random_id_lists(cfg: MobileBertConfig, n: int, seed: int) -> list[list[int]]:
    """Random BERT-shaped sequences: [CLS] random ids [SEP], real length in [4, seq_len]."""
    rng = np.random.default_rng(seed)
    special = cfg.vocab_size > SEP_ID
    lo = MASK_ID + 1 if cfg.vocab_size > 2 * (MASK_ID + 1) else 1
    out = []
    for _ in range(n):
        length = int(rng.integers(min(4, cfg.seq_len), cfg.seq_len + 1))
        ids = rng.integers(lo, cfg.vocab_size, length).tolist()
        if special and length >= 2:
            ids[0], ids[-1] = CLS_ID, SEP_ID
        out.append(ids)
    return out


def read_calib_ids(path: str | os.PathLike) -> list[list[int]]:
    """The --calib-ids hook: one space-separated token-id list per line."""
    return [[int(t) for t in line.split()] for line in read_lines(path)]


def calibration_samples(cfg: MobileBertConfig, n: int = 100, seed: int = 0,
                        ids_file: str | os.PathLike | None = None) -> list[dict[str, np.ndarray]]:
    id_lists = read_calib_ids(ids_file) if ids_file else random_id_lists(cfg, n, seed)
    for ids in id_lists:
        if ids and max(ids) >= cfg.vocab_size:
            raise ValueError(f"calibration id {max(ids)} >= vocab_size {cfg.vocab_size}")
    return [ids_to_sample(ids, cfg.seq_len) for ids in id_lists]


# --------------------------------------------------------------------------- conversion


def export_saved_model(model, cfg: MobileBertConfig, directory: str) -> str:
    """Keras 3 model -> SavedModel with one signature taking the three named inputs."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    specs = [tf.TensorSpec((1, cfg.seq_len), tf.int32, name=n) for n in INPUT_NAMES]

    def serve(input_ids, attention_mask, token_type_ids):
        return model({"input_ids": input_ids, "attention_mask": attention_mask,
                      "token_type_ids": token_type_ids})

    archive.add_endpoint("serve", serve, input_signature=specs)
    try:
        archive.write_out(directory, verbose=False)
    except TypeError:  # Keras 2 (TF <= 2.15): no 'verbose'
        archive.write_out(directory)
    return directory


def make_converter(saved_model_dir: str, scheme: str,
                   calib: list[dict[str, np.ndarray]] | None):
    import tensorflow as tf

    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose from {SCHEMES}")
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if scheme == "float32":
        return conv
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if scheme == "float16":
        conv.target_spec.supported_types = [tf.float16]
    elif scheme == "dynamic":
        pass  # DEFAULT without a representative dataset = dynamic-range
    else:
        if not calib:
            raise ValueError(f"scheme {scheme} needs calibration samples")
        samples = list(calib)
        # Dicts keyed by signature input name: order-proof against the alphabetical
        # input ordering of the converted model.
        conv.representative_dataset = lambda: iter(samples)
        if scheme == "16x8":
            # TFLITE_BUILTINS as well: the 16x8 quantizer has no int16 CAST, and the
            # int32 -> float CAST of attention_mask must stay float ("Quantization
            # to 16x8-bit not yet supported for op: 'CAST'" otherwise).
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS,
            ]
        else:
            # inference_input/output_type left at their defaults: id inputs stay
            # int32 and the logits stay float32 behind a DEQUANTIZE.
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if scheme == "int8-per-tensor":
                conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    return conv


def convert_schemes(model, cfg: MobileBertConfig, schemes: Iterable[str],
                    calib: list[dict[str, np.ndarray]] | None = None
                    ) -> dict[str, tuple[bytes, float]]:
    """Export once, convert to each scheme. Returns {scheme: (flatbuffer, seconds)}.

    The seconds include the shared export, counted against the first scheme only.
    """
    out = {}
    with tempfile.TemporaryDirectory(prefix="npmobilebert_sm_") as tmp:
        t0 = time.perf_counter()
        export_saved_model(model, cfg, os.path.join(tmp, "saved_model"))
        export_s = time.perf_counter() - t0
        for scheme in schemes:
            t0 = time.perf_counter()
            data = make_converter(os.path.join(tmp, "saved_model"), scheme, calib).convert()
            out[scheme] = (bytes(data), time.perf_counter() - t0 + export_s)
            export_s = 0.0
    return out


# --------------------------------------------------------------------------- packing


def _schema():
    """The TFLite FlatBuffer object API: LiteRT's, else (TF <= 2.15 environments, which cannot
    install ai-edge-litert next to numpy<2) the copy TensorFlow ships."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def _litert_interpreter():
    """(Interpreter, OpResolverType): LiteRT's, else TensorFlow's own (as _schema)."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        from tensorflow.lite.python.interpreter import Interpreter, OpResolverType
    return Interpreter, OpResolverType


def _aligned_builder():
    import flatbuffers

    class AlignedBuilder(flatbuffers.Builder):
        """Byte vectors (weight buffers) 16-byte aligned, as the converter writes them."""

        def StartVector(self, elemSize, numElems, alignment):  # noqa: N802,N803
            if elemSize == 1:
                alignment = max(alignment, 16)
            return super().StartVector(elemSize, numElems, alignment)

    return AlignedBuilder(1024)


def add_metadata(tflite: bytes, name: str, payload: bytes) -> bytes:
    """Add (or replace) a named metadata entry whose buffer holds ``payload``."""
    schema = _schema()

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    buf = schema.BufferT()
    buf.data = np.frombuffer(payload, np.uint8).copy()
    model.buffers.append(buf)
    entries = [m for m in (model.metadata or []) if m.name not in (name, name.encode())]
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = entries + [entry]
    builder = _aligned_builder()
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(tflite: bytes, name: str = METADATA_NAME) -> bytes | None:
    schema = _schema()

    model = schema.Model.GetRootAs(tflite, 0)
    for i in range(model.MetadataLength()):
        m = model.Metadata(i)
        if m.Name().decode() == name:
            return model.Buffers(m.Buffer()).DataAsNumpy().tobytes()
    return None


def append_zip(tflite: bytes, files: dict[str, bytes]) -> bytes:
    """Append a ZIP of ``files`` after the FlatBuffer, as the TFLite metadata writer does.

    ZipFile in "a" mode on non-ZIP bytes appends an archive with absolute offsets;
    entries are stored uncompressed so a runtime could map them in place.
    """
    bio = io.BytesIO(tflite)
    with zipfile.ZipFile(bio, "a", compression=zipfile.ZIP_STORED) as zf:
        for fname, data in files.items():
            info = zipfile.ZipInfo(fname, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible
            zf.writestr(info, data)
    return bio.getvalue()


def pack(tflite: bytes, *, vocab: list[str], labels: list[str], scheme: str,
         cfg: MobileBertConfig, extra: dict | None = None) -> bytes:
    meta = {
        "labels": labels,
        "seq_len": cfg.seq_len,
        "vocab_size": cfg.vocab_size,
        "scheme": scheme,
        "mask_value": cfg.mask_value,
        "config": cfg.to_dict(),
        **(extra or {}),
    }
    out = add_metadata(tflite, METADATA_NAME, json.dumps(meta, sort_keys=True).encode())
    return append_zip(out, {
        "vocab.txt": ("\n".join(vocab) + "\n").encode(),
        "labels.txt": ("\n".join(labels) + "\n").encode(),
    })


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- inspection


def op_histogram(tflite: bytes) -> collections.Counter:
    """Counter of (op name, op version) over subgraph 0, read from the FlatBuffer."""
    schema = _schema()

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(tflite, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        # builtin_code (int32) supersedes the deprecated int8 field past 127
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        codes.append((names.get(code, str(code)), oc.Version()))
    sg = model.Subgraphs(0)
    return collections.Counter(codes[sg.Operators(i).OpcodeIndex()]
                               for i in range(sg.OperatorsLength()))


def interpreter(model_path_or_bytes, *, reference: bool = False, preserve: bool = False):
    Interpreter, OpResolverType = _litert_interpreter()

    kw = {}
    if reference:
        kw["experimental_op_resolver_type"] = OpResolverType.BUILTIN_REF
    if preserve:
        kw["experimental_preserve_all_tensors"] = True
    if isinstance(model_path_or_bytes, (bytes, bytearray)):
        kw["model_content"] = bytes(model_path_or_bytes)
    else:
        kw["model_path"] = str(model_path_or_bytes)
    it = Interpreter(**kw)
    it.allocate_tensors()
    return it


def describe(tflite: bytes) -> dict:
    """Op histogram (FlatBuffer) plus node/tensor counts from LiteRT's reference resolver."""
    it = interpreter(tflite, reference=True)
    ops = it._get_ops_details()
    return {
        "ops": op_histogram(tflite),
        "interpreter_ops": collections.Counter(o["op_name"] for o in ops),
        "num_tensors": len(it.get_tensor_details()),
        "num_nodes": len(ops),
    }


def verify(path: str | os.PathLike) -> dict:
    """Loads in LiteRT, has the packed files and the metadata entry; returns the metadata."""
    data = Path(path).read_bytes()
    it = interpreter(path)
    sig = it.get_signature_list()["serving_default"]
    assert sig["inputs"] == sorted(INPUT_NAMES), sig
    assert sig["outputs"] == [OUTPUT_NAME], sig
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert {"vocab.txt", "labels.txt"} <= set(names), names
        labels = zf.read("labels.txt").decode().split()
    raw = read_metadata(data)
    assert raw is not None, "no npmobilebert metadata entry"
    meta = json.loads(raw)
    assert meta["labels"] == labels
    return meta


def print_description(title: str, desc: dict, file=sys.stdout) -> None:
    print(f"== {title}: {desc['num_nodes']} ops, {desc['num_tensors']} tensors", file=file)
    for (name, version), n in sorted(desc["ops"].items()):
        print(f"   {name:24s} v{version:<2d} x{n}", file=file)


# --------------------------------------------------------------------------- CLI


def config_from_args(a) -> MobileBertConfig:
    return MobileBertConfig(
        vocab_size=a.vocab_size, seq_len=a.seq_len, num_layers=a.layers, hidden=a.hidden,
        intra_bottleneck=a.intra_bottleneck, intermediate=a.intermediate, num_ffn=a.num_ffn,
        num_heads=a.heads, embedding_size=a.embedding_size, type_vocab_size=a.type_vocab_size,
        max_position=a.max_position, num_labels=a.num_labels, mask_value=a.mask_value,
    )


def run(cfg: MobileBertConfig, schemes: list[str], out_dir: str, name: str, *,
        seed: int = 0, vocab: list[str] | None = None, labels: list[str] | None = None,
        calib_n: int = 100, calib_ids: str | None = None, keras_model: str | None = None,
        show: bool = True, log=sys.stderr, suffix: str = "",
        extra: dict | None = None, fold_residual: bool = False, fold_attention: bool = False,
        builtin_batch_matmul: bool = False) -> dict[str, dict]:
    """Build (or load) the model, convert to each scheme, pack, write, verify.
    ``extra``: more entries for the metadata JSON (e.g. training provenance).
    ``fold_residual``: first fold the residual NoNorms' scales into the dense layers
    (fold_norms.py; the same function, no per-channel MUL left on the residual streams).
    ``fold_attention``: fold the scores' 1 / sqrt(head_dim) into the query dense layers
    (fold_norms.py; no scalar MUL after Q K^T).
    ``builtin_batch_matmul``: requantize any int8 BATCH_MATMUL rhs off zero point 0, so that
    none runs in XNNPACK (builtin_batch_matmul.py; the metadata lists the tensors changed)."""
    vocab = vocab or synthetic_vocab(cfg.vocab_size)
    if len(vocab) != cfg.vocab_size:
        raise ValueError(f"vocab has {len(vocab)} entries, config says {cfg.vocab_size}")
    labels = labels or default_labels(cfg.num_labels)
    if len(labels) != cfg.num_labels:
        raise ValueError(f"{len(labels)} labels, config says {cfg.num_labels}")

    if keras_model:
        import keras

        model = keras.saving.load_model(keras_model, custom_objects=CUSTOM_OBJECTS)
    else:
        model = build_trained_like(cfg, seed)
    needs_calib = fold_residual or any(s in ("int8", "int8-per-tensor", "16x8") for s in schemes)
    calib = calibration_samples(cfg, calib_n, seed + 1, calib_ids) if needs_calib else None
    if fold_residual:
        model = fold_residual_scales(model, cfg, calib)
        cfg = replace(cfg, residual_scale=False, residual_shift=False)
    if fold_attention:
        model = fold_attention_scale(model, cfg)
        cfg = replace(cfg, attention_scale=False)

    results = {}
    converted = convert_schemes(model, cfg, schemes, calib)
    for scheme, (flat, secs) in converted.items():
        notes = {"seed": seed, **(extra or {})}
        if builtin_batch_matmul:
            flat, requantized = keep_batch_matmuls_builtin(flat)
            if requantized:
                notes["batch_matmul_rhs_requantized"] = requantized
        data = pack(flat, vocab=vocab, labels=labels, scheme=scheme, cfg=cfg, extra=notes)
        path = Path(out_dir) / f"{name}_{scheme}{suffix}.tflite"
        write_atomic(path, data)
        verify(path)
        desc = describe(data)
        results[scheme] = {"path": str(path), "seconds": secs, "bytes": len(data), **desc}
        print(f"{path}: {len(data)} bytes, converted in {secs:.1f} s", file=log)
        if show:
            print_description(f"{name} {scheme}", desc, file=log)
    return results


def main(argv=None) -> int:
    import argparse

    d = MobileBertConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--schemes", default="int8",
                    help=f"comma-separated, from {','.join(SCHEMES)} (or 'all')")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--name", default="mobilebert")
    ap.add_argument("--suffix", default="", help="after the scheme in the file name, e.g. _tf215")
    ap.add_argument("--seed", type=int, default=0, help="weights seed; calibration uses seed+1")
    ap.add_argument("--vocab", help="vocab.txt (one token a line); sets --vocab-size")
    ap.add_argument("--labels", help="labels.txt (one label a line); sets --num-labels")
    ap.add_argument("--keras-model", help="load this saved .keras model instead of building")
    ap.add_argument("--calib-n", type=int, default=100, help="random calibration samples")
    ap.add_argument("--calib-ids", help="calibration token ids: one space-separated list a line")
    ap.add_argument("--quiet", action="store_true", help="don't print op histograms")
    ap.add_argument("--fold-residual-scales", action="store_true",
                    help="fold the residual NoNorms (scale and shift) into the dense layers first (fold_norms.py)")
    ap.add_argument("--fold-attention-scale", action="store_true",
                    help="fold the scores' 1/sqrt(head_dim) into the query dense layers first (fold_norms.py)")
    ap.add_argument("--builtin-batch-matmul", action="store_true",
                    help="requantize int8 BATCH_MATMUL rhs tensors off zero point 0 so XNNPACK takes none "
                         "(builtin_batch_matmul.py)")
    for f in fields(MobileBertConfig):
        if f.type in (bool, "bool"):
            continue   # residual_scale/_shift, attention_scale: a trained model's; --fold-* remove them
        flag = {"num_layers": "layers", "num_heads": "heads"}.get(f.name, f.name)
        ap.add_argument("--" + flag.replace("_", "-"), dest=flag, type=type(getattr(d, f.name)),
                        default=getattr(d, f.name))
    a = ap.parse_args(argv)

    vocab = read_lines(a.vocab) if a.vocab else None
    labels = read_lines(a.labels) if a.labels else None
    if vocab:
        a.vocab_size = len(vocab)
    if labels:
        a.num_labels = len(labels)
    schemes = list(SCHEMES) if a.schemes == "all" else a.schemes.split(",")
    run(config_from_args(a), schemes, a.out_dir, a.name, seed=a.seed, vocab=vocab,
        labels=labels, calib_n=a.calib_n, calib_ids=a.calib_ids, keras_model=a.keras_model,
        show=not a.quiet, suffix=a.suffix, fold_residual=a.fold_residual_scales,
        fold_attention=a.fold_attention_scale, builtin_batch_matmul=a.builtin_batch_matmul)
    return 0


if __name__ == "__main__":
    sys.exit(main())
