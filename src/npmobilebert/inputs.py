"""Model inputs: which input is which (ids, mask, token types), and how to make them.

A BERT-style model takes int32 ``input_ids``, ``attention_mask`` and ``token_type_ids`` (the
converter orders them alphabetically). Roles are recognised by name, so the same code serves any
model with those inputs; other models get random inputs by dtype.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError, ModelFormatError, UnsupportedOpError
from .interpreter import MAX_TENSOR_BYTES
from .model import Model, Tensor
from .text import Tokenizer

# Token ids are int32 tensors: a vocabulary cannot be larger than their range.
_MAX_VOCAB_SIZE = 2**31 - 1
ROLE_WORDS = {"ids": ("input_ids", "input_word_ids", "ids"),
              "mask": ("attention_mask", "input_mask", "mask"),
              "types": ("token_type_ids", "segment_ids", "input_type_ids", "type")}


# Ops whose output holds values of their input 0 (moved, reshaped, or cast -- integers in
# range survive a cast): a bound on the output's values bounds the input's.  GATHER's output
# holds values of its table (input 0).  CONCATENATION's hold those of every input.
_VALUE_CARRIERS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "CAST", "TRANSPOSE", "SLICE",
                             "STRIDED_SLICE", "GATHER", "TILE", "BROADCAST_TO", "PACK", "UNPACK",
                             "SPLIT", "SPLIT_V"})


def input_value_ranges(model: Model) -> dict[int, tuple[int, int]]:
    """Tensor index -> the inclusive range [low, high] its values must lie in for the model to
    run: indices of a GATHER (along its axis), EMBEDDING_LOOKUP or GATHER_ND table, the quantized
    input of RSQRT, followed back through the ops that carry values unchanged.  LiteRT's kernels refuse an index outside the
    table (gather.cc, embedding_lookup.cc, gather_nd.cc: "out of bounds"), so a random input must
    be drawn inside it.  Ops are visited last to first: every reader before the writer."""
    tensors = model.tensors
    ranges: dict[int, tuple[int, int]] = {}

    def narrow(i: int, low: int, high: int) -> None:
        if i < 0:
            return
        old = ranges.get(i)
        ranges[i] = (low, high) if old is None else (max(old[0], low), min(old[1], high))

    def known_dims(t: Tensor) -> tuple[int, ...] | None:
        """The shape, when no dimension is left to run time (a table's size must be known)."""
        signature = t.shape_signature
        if (signature is not None and -1 in signature) or (not t.shape and signature):
            return None
        return t.shape

    for op in reversed(model.operators):
        ins = op.inputs
        if op.opcode == "GATHER" and len(ins) >= 2 and ins[0] >= 0:
            shape = known_dims(tensors[ins[0]])
            axis = op.options.get("axis", 0)
            if shape is not None and isinstance(axis, int) and -len(shape) <= axis < len(shape):
                narrow(ins[1], 0, shape[axis] - 1)
        elif op.opcode == "EMBEDDING_LOOKUP" and len(ins) >= 2 and ins[1] >= 0:
            shape = known_dims(tensors[ins[1]])
            if shape:
                narrow(ins[0], 0, shape[0] - 1)
        elif op.opcode == "GATHER_ND" and len(ins) >= 2 and ins[0] >= 0 and ins[1] >= 0:
            shape, index_shape = known_dims(tensors[ins[0]]), known_dims(tensors[ins[1]])
            if shape and index_shape and 0 < index_shape[-1] <= len(shape):
                narrow(ins[1], 0, min(shape[: index_shape[-1]]) - 1)
        elif op.opcode == "RSQRT" and ins and ins[0] >= 0:
            x = tensors[ins[0]]
            if np.issubdtype(x.dtype, np.integer) and x.quantization is not None:
                # quantized RSQRT refuses a value below the zero point ("Rsqrt is only defined
                # for positive values", elementwise.cc)
                narrow(ins[0], x.quantization.zero_point, np.iinfo(x.dtype).max)
        if op.opcode in _VALUE_CARRIERS and ins and any(o in ranges for o in op.outputs):
            bounds = [ranges[o] for o in op.outputs if o in ranges]
            low, high = max(b[0] for b in bounds), min(b[1] for b in bounds)
            carried = ins if op.opcode == "PACK" else ins[1:2] if op.opcode == "SPLIT" else ins[:1]
            for i in carried:
                narrow(i, low, high)
        if op.opcode == "CONCATENATION" and op.outputs and op.outputs[0] in ranges:
            for i in ins:
                narrow(i, *ranges[op.outputs[0]])
    return ranges


def input_role(tensor: Tensor) -> str | None:
    name = tensor.name.lower()
    for role in ("mask", "types", "ids"):   # "ids" last: "token_type_ids" is a types input
        if any(word in name for word in ROLE_WORDS[role]):
            return role
    return None


def model_metadata(model: Model) -> dict:
    """The JSON our tools write into the model (labels, seq_len, ...); {} if absent or not an object."""
    raw = model.metadata.get("npmobilebert")
    if raw is None:
        return {}
    try:
        meta = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}


def model_labels(model: Model) -> list[str] | None:
    """The class names recorded in the model's metadata, when they are a list of strings."""
    labels = model_metadata(model).get("labels")
    if isinstance(labels, list) and labels and all(isinstance(name, str) for name in labels):
        return labels
    return None


@dataclass
class BertInputs:
    """Inputs for one sequence, in the model's input order."""

    arrays: list[np.ndarray]
    length: int
    tokens: list[str] | None = None


class InputMaker:
    """Builds inputs for a model: from text, from ids, or at random."""

    def __init__(self, model: Model):
        self.model = model
        self.specs = [model.tensors[i] for i in model.inputs]
        for t in self.specs:
            # The inputs are allocated here, before any Interpreter checks sizes: same cap. Every
            # dimension counts, a zero one aside: NumPy refuses [0, 2^31-1, 2^31-1, 2^31-1] too.
            # A STRING element is a variable-length bytes object: count it as 16 bytes at least.
            itemsize = t.dtype.itemsize if t.type_name != "STRING" else 16
            if math.prod(int(d) for d in t.shape if d) * itemsize > MAX_TENSOR_BYTES:
                raise ModelFormatError(f"input '{t.name}' declares shape {list(t.shape)} of {t.type_name}, "
                                       f"over the limit of {MAX_TENSOR_BYTES / (1 << 30):g} GiB per tensor")
            if t.dtype.kind not in "biufc" and t.type_name != "STRING":   # STRING: drawn as LiteRT takes it
                raise UnsupportedOpError(f"input '{t.name}' is of type {t.type_name}: inputs are made "
                                         f"for numeric tensors only")
        self.roles = [input_role(t) for t in self.specs]
        ranges = input_value_ranges(model)
        self.ranges = [ranges.get(i) for i in model.inputs]
        ids_spec = self.specs[self.roles.index("ids")] if "ids" in self.roles else None
        self.seq_len = int(ids_spec.shape[-1]) if ids_spec is not None and ids_spec.shape else 0
        # Text and ids fill one row of every ids/mask/types input: they must all be integer
        # tensors whose last dim is the sequence length, with room for [CLS] and [SEP].
        self.is_bert = ids_spec is not None and self.seq_len >= 2 and all(
            t.dtype in (np.int32, np.int64) and t.shape and t.shape[-1] == self.seq_len and t.size
            for t, r in zip(self.specs, self.roles) if r)
        self.vocab_size = self._vocab_size()
        self._tokenizer = None

    def _vocab_size(self) -> int:
        ids_range = self.ranges[self.roles.index("ids")] if "ids" in self.roles else None
        declared = self._declared_vocab_size()
        if ids_range is not None and ids_range[0] <= 0 <= ids_range[1]:
            return min(declared, ids_range[1] + 1)     # the ids index a table of that size
        return declared

    def _declared_vocab_size(self) -> int:
        meta = model_metadata(self.model)
        size = meta.get("vocab_size")
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            if size > _MAX_VOCAB_SIZE:
                raise ModelFormatError(f"the model's metadata declares vocab_size {size}: token ids "
                                       f"are int32, at most {_MAX_VOCAB_SIZE}")
            return size
        vocab = self.model.packed_files.get("vocab.txt")
        if vocab is not None:
            lines = len(bytes(vocab).decode("utf-8", "replace").splitlines())
            if lines:
                return lines
        # the largest GATHER table the ids could index
        sizes = []
        for op in self.model.operators:
            if op.opcode == "GATHER" and op.inputs and op.inputs[0] >= 0:
                table = self.model.tensors[op.inputs[0]]
                if table.data is not None and table.shape and table.shape[0] > 0:
                    sizes.append(table.shape[0])
        return int(max(sizes)) if sizes else 30522

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            vocab = self.model.packed_files.get("vocab.txt")
            if vocab is None:
                raise InputError("this model has no packed vocab.txt: give token ids (--ids) instead of text")
            if not self.is_bert:
                raise InputError("text needs a model with input_ids (and attention_mask, token_type_ids) "
                                 "inputs of one sequence length")
            try:
                vocab_text = bytes(vocab).decode("utf-8")
            except UnicodeDecodeError as e:
                raise ModelFormatError(f"the model's packed vocab.txt is not UTF-8 (byte {e.start})") from None
            # the text normalisation the model was trained with (text.NORMALIZERS; absent: the default)
            self._tokenizer = Tokenizer(vocab_text, self.seq_len, model_metadata(self.model).get("normalize"))
        return self._tokenizer

    def from_ids(self, ids) -> BertInputs:
        """Inputs from token ids: a sequence (list, tuple, 1-D array) of whole numbers."""
        if not self.is_bert:
            raise InputError("token ids need a model with input_ids (and attention_mask, token_type_ids) "
                             "inputs of one sequence length")
        ids = _whole_numbers(ids)
        if not ids:
            raise InputError("no token ids given")
        if len(ids) > self.seq_len:
            raise InputError(f"{len(ids)} ids given; the model takes at most {self.seq_len}")
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"token id {bad[0]} is outside the vocabulary [0, {self.vocab_size})")
        return self._assemble(list(ids))

    def from_text(self, text: str) -> BertInputs:
        if isinstance(text, str) and not text.strip():
            # [CLS] [SEP] alone would run, but an empty text is a mistake, not a tweet.
            raise InputError("the text is empty: give some words (or token ids with --ids)")
        enc = self.tokenizer.encode(text)
        n = int(enc.attention_mask.sum())
        made = self._assemble(enc.input_ids[0, :n].tolist())
        made.tokens = enc.tokens
        return made

    def random(self, rng: np.random.Generator) -> BertInputs:
        if not self.is_bert:
            return BertInputs([_random_array(t, rng, value_range, role == "mask")
                               for t, value_range, role in zip(self.specs, self.ranges, self.roles)], 0)
        length = int(rng.integers(2, self.seq_len + 1))
        low = min(999, self.vocab_size // 2)   # skip [unused] and special tokens where the vocab allows
        body = rng.integers(low, self.vocab_size, size=length - 2).tolist()
        cls, sep = (101, 102) if self.vocab_size > 102 else (1, 2)
        return self._assemble([cls] + body + [sep])

    def _assemble(self, ids: list[int]) -> BertInputs:
        n = len(ids)
        arrays = []
        for spec, role in zip(self.specs, self.roles):
            a = np.zeros(spec.shape, dtype=spec.dtype)
            if role == "ids":
                a.reshape(-1, self.seq_len)[0, :n] = ids
            elif role == "mask":
                a.reshape(-1, self.seq_len)[0, :n] = 1
            arrays.append(a)
        return BertInputs(arrays, n)


def _whole_numbers(ids) -> list[int]:
    """``ids`` as a list of Python ints; a TypeError for anything but a flat sequence of integers
    (7.9 or True silently becoming 7 or 1 would run another text than the one meant)."""
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise TypeError(f"token ids must be a list or 1-D array of integers, not {type(ids).__name__}")
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise TypeError(f"token ids must be a 1-D array, not one of shape {list(ids.shape)}")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"token ids must be integers, not {ids.dtype}")
        return [int(i) for i in ids]
    out = []
    for i in ids:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"token ids must be integers, not {type(i).__name__} ({i!r})")
        out.append(int(i))
    return out


def _random_array(spec: Tensor, rng: np.random.Generator, value_range: tuple[int, int] | None = None,
                  is_mask: bool = False) -> np.ndarray:
    """One random input a model accepts (cli.RANDOM_INPUTS_HELP says what is drawn)."""
    if is_mask and spec.type_name != "STRING":
        value_range = (0, 1)              # an attention mask: keep or drop, nothing else
    if spec.type_name == "STRING":
        # LiteRT takes (and returns) an object array of bytes: short random lowercase words
        letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
        words = np.empty(spec.size, dtype=object)
        words[:] = [bytes(rng.choice(letters, int(rng.integers(1, 9)))) for _ in range(spec.size)]
        return words.reshape(spec.shape)
    if spec.dtype == np.bool_:
        return rng.integers(0, 2, spec.shape).astype(np.bool_)
    if np.issubdtype(spec.dtype, np.floating):
        if value_range is not None and value_range[0] <= value_range[1]:
            # a float cast to an index: whole numbers inside the table
            return rng.integers(value_range[0], value_range[1] + 1, spec.shape).astype(spec.dtype)
        return rng.standard_normal(spec.shape).astype(spec.dtype)
    if not np.issubdtype(spec.dtype, np.integer):
        raise InputError(f"input '{spec.name}' is {spec.type_name}: no random values of that type")
    info = np.iinfo(spec.dtype)
    low, high = max(info.min, -128), min(info.max, 127)
    if value_range is not None:
        low, high = max(info.min, value_range[0]), min(info.max, value_range[1])
        if low > high:
            raise InputError(f"input '{spec.name}' must lie in [{value_range[0]}, {value_range[1]}], "
                             f"which its type {spec.type_name} cannot hold: give inputs instead of random ones")
    return rng.integers(low, high + 1, spec.shape).astype(spec.dtype)
