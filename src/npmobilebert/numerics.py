"""Numerics profiles: which runtime's arithmetic the NumPy interpreter reproduces.

The same int8 model gives different answers on different runtimes, because each runtime makes
its own choices for a handful of per-op rules: how an int32 accumulator is requantized (in
double precision, or with an integer (multiplier, shift) pair, or in float32), how softmax
computes its exponentials, which ops a delegate takes. A profile names one choice per rule:

    interp = Interpreter(model, numerics="tflm")     # what TensorFlow Lite Micro computes

* ``litert-ref`` (default): LiteRT's reference kernels (``BUILTIN_REF``), the oracle the
  interpreter is bit-identical to.
* ``tflm``: TensorFlow Lite Micro's kernels, as the ``tflite-micro`` Python package runs them.
* ``xnnpack``: LiteRT's default resolver -- the XNNPACK delegate for the ops it takes, LiteRT's
  optimized builtin kernels for the others.
* ``xnnpack-aarch64`` and ``builtin-aarch64``: the default resolver and the optimized builtin
  kernels of LiteRT's aarch64 wheels (checked on an emulated Arm core, docs/device.md).

The kernels stay one per op: each looks up its rule in ``ctx.numerics`` and calls the small
strategy function of that name. This module only *names* the rules (and says which source each
mirrors); the arithmetic is in fixedpoint.py and the kernels. Float and dynamic-range models keep
the ``litert-ref`` arithmetic under every profile (the rules below are integer rules).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InputError


@dataclass(frozen=True)
class Rule:
    """One way of doing one step of one op, and where it comes from."""

    name: str          # the strategy's name, which the kernel dispatches on
    summary: str       # what it computes, in one line
    source: str        # the C++ it mirrors (repository: path)


# The rules, by the step they decide. A profile picks one rule per step. Where an op is not
# delegated (xnnpack profile), the kernel falls back to the builtin kernel's rule itself.
RULES: dict[str, dict[str, Rule]] = {
    # FULLY_CONNECTED int8/int16: the int32 accumulator -> the output scale
    "fc_requantize": {
        "double": Rule(
            "double", "(int32) round((double) acc * in_scale * filter_scale / out_scale), "
            "one rounding, ties away from zero",
            "LiteRT tflite/kernels/internal/reference/integer_ops/fully_connected.h "
            "(FullyConnectedPerChannel with float scales, 2025)"),
        "fixed-point": Rule(
            "fixed-point", "QuantizeMultiplier(double(in)*double(filter)/double(out)) -> (M0, shift), "
            "per channel or per tensor; MultiplyByQuantizedMultiplier: Q31 high mul, then a rounding "
            "right shift (two roundings)",
            "tflite-micro tensorflow/lite/micro/kernels/fully_connected_common.cc "
            "(CalculateOpDataFullyConnected; per-tensor: kernel_util.cc "
            "GetQuantizedConvolutionMultipler as the package builds it, in double) + "
            "tensorflow/lite/kernels/internal/reference/integer_ops/fully_connected.h + "
            "kernels/internal/common.cc"),
        "fp32": Rule(
            "fp32", "float32 scale in*filter/out per channel; (float) acc * scale rounded to "
            "nearest-even",
            "XNNPACK src/operators/fully-connected-nc.c + src/qs8-qc8w-gemm (fp32 kernels)"),
    },
    # ADD / SUB int8
    "add_requantize": {
        "fixed-point": Rule(
            "fixed-point", "inputs << 20, each rescaled to 2*max(s1, s2) by (M0, shift), summed, "
            "rescaled to the output by (M0, shift)",
            "LiteRT tflite/kernels/internal/reference/integer_ops/add.h AddFunc "
            "(tflite-micro: the same file; LiteRT builtin: optimized_integer_ops/add.h, same values)"),
        "xnnpack": Rule(
            "xnnpack", "one ~21-bit integer multiplier per input from the float32 ratio "
            "in_scale/out_scale; (bias + a*ma + b*mb) >> shift, round half up",
            "XNNPACK src/microparams-init.c xnn_init_qs8_add_minmax_scalar_params + "
            "src/qs8-vadd, src/qs8-vaddc"),
    },
    # MUL int8
    "mul_requantize": {
        "fixed-point": Rule(
            "fixed-point", "(x1 - z1)*(x2 - z2) times one (M0, shift) for float32(s1*s2)/s_out, "
            "two roundings",
            "LiteRT tflite/kernels/mul.cc + tflite/kernels/internal/reference/integer_ops/mul.h"),
        "fixed-point-f64": Rule(
            "fixed-point-f64", "(x1 - z1)*(x2 - z2) times one (M0, shift) for "
            "double(s1)*double(s2)/double(s_out), two roundings",
            "tflite-micro tensorflow/lite/micro/kernels/mul_common.cc (CalculateOpDataMul) + "
            "tensorflow/lite/kernels/internal/reference/integer_ops/mul.h"),
        "xnnpack-fp32": Rule(
            "xnnpack-fp32", "(float) ((x1 - z1)*(x2 - z2)) * float32(s1*s2/s_out), rounded to "
            "nearest-even",
            "XNNPACK src/microparams-init.c xnn_init_qs8_mul_minmax_scalar_params + "
            "src/qs8-vmul, src/qs8-vmulc (fp32 kernels)"),
    },
    # BATCH_MATMUL int8
    "batch_matmul_requantize": {
        "fixed-point": Rule(
            "fixed-point", "MultiplyByQuantizedMultiplier(acc, M0, shift), multiplier from "
            "float32(lhs_scale * rhs_scale) / out_scale",
            "LiteRT tflite/kernels/batch_matmul.cc + tflite/kernels/internal/reference/"
            "batch_matmul.h (builtin: optimized_ops::BatchMatMul, same values)"),
        "fixed-point-f64": Rule(
            "fixed-point-f64", "MultiplyByQuantizedMultiplier(acc, M0, shift), multiplier from "
            "double(lhs_scale) * double(rhs_scale) / double(out_scale)",
            "tflite-micro tensorflow/lite/micro/kernels/batch_matmul.cc (kernel_util.cc "
            "GetQuantizedConvolutionMultipler as the package builds it, in double) + "
            "tensorflow/lite/kernels/internal/reference/batch_matmul.h"),
        "fp32": Rule(
            "fp32", "(float) acc * float32(lhs_scale*rhs_scale/out_scale), rounded to nearest-even; "
            "only where the rhs zero point is 0 (else the builtin kernel runs it)",
            "XNNPACK src/subgraph/batch-matrix-multiply.c + src/qs8-gemm (fp32); LiteRT "
            "tflite/delegates/xnnpack/xnnpack_delegate.cc VisitBatchMatMulNode"),
        "single-round": Rule(
            "single-round", "(acc * M0 + 2^(30 - shift)) >> (31 - shift): the (M0, shift) pair of "
            "fixed-point, one rounding (half up)",
            "LiteRT 1.x tflite/kernels/internal/optimized/batch_matmul.h via cpu_backend_gemm "
            "(ruy's aarch64 kernels); the rounding measured on emulated aarch64 dumps "
            "(docs/device.md)"),
        "fp32-rhs-zero-point-dropped": Rule(
            "fp32-rhs-zero-point-dropped", "as fp32, for every int8 BATCH_MATMUL, computed as if "
            "the rhs zero point were 0 (a LiteRT 2.0.x bug: wrong by up to several steps where "
            "it is not)",
            "LiteRT 2.0.x tflite/delegates/xnnpack/xnnpack_delegate.cc VisitBatchMatMulNode "
            "(no zero-point check yet) + XNNPACK src/subgraph/batch-matrix-multiply.c; measured "
            "on emulated aarch64 dumps (docs/device.md)"),
    },
    # SOFTMAX int8 (XNNPACK does not take it: LiteRT's builtin kernel runs it in the xnnpack profile)
    "softmax_int8": {
        "float-lut": Rule(
            "float-lut", "float table expf(-in_scale*beta*d) of the 256 differences d = max - x, "
            "float32 sum, 1/(sum*out_scale), round(table*that) + zero point",
            "LiteRT tflite/kernels/activations.cc SoftmaxPrepare (PopulateSoftmaxLookupTable) + "
            "tflite/kernels/internal/optimized/optimized_ops.h Softmax (float table)"),
        "uint16-lut": Rule(
            "uint16-lut", "uint16 table (int)(expf(-in_scale*beta*d) * 65535 + 0.5) of d = max - x, "
            "int32 sum, QuantizeMultiplier(1.0f/(sum*out_scale)), MultiplyByQuantizedMultiplier of "
            "each table value + zero point",
            "LiteRT tflite/kernels/internal/optimized/optimized_ops.h PopulateSoftmaxUInt8LookupTable "
            "+ SoftmaxInt8LUT (TFLITE_SOFTMAX_USE_UINT16_LUT: __aarch64__ && __clang__) via "
            "tflite/kernels/activations.cc SoftmaxQuantized"),
        "gemmlowp": Rule(
            "gemmlowp", "Q5.26 scaled difference, gemmlowp exp_on_negative_values, Q12.19 sum, "
            "GetReciprocal",
            "LiteRT tflite/kernels/internal/reference/softmax.h (tflite-micro "
            "tensorflow/lite/micro/kernels/softmax_common.cc: the same)"),
    },
}


@dataclass(frozen=True)
class Profile:
    """A runtime's choice of one rule per step."""

    name: str
    runtime: str                       # the runtime it reproduces, in words
    choices: dict[str, str]            # step -> rule name
    notes: tuple[str, ...] = field(default_factory=tuple)

    def rule(self, step: str, strategy: str | None = None) -> Rule:
        """This profile's rule for ``step`` (or the named ``strategy`` of that step: a kernel
        that falls back, e.g. an op XNNPACK does not take, names the rule it ends up using)."""
        return RULES[step][strategy or self.choices[step]]

    def strategy(self, step: str) -> str:
        """The name of the rule this profile uses for ``step`` (what a kernel dispatches on)."""
        return self.choices[step]


LITERT_REF = Profile(
    "litert-ref", "LiteRT reference kernels (BUILTIN_REF)",
    {"fc_requantize": "double", "add_requantize": "fixed-point", "mul_requantize": "fixed-point",
     "batch_matmul_requantize": "fixed-point", "softmax_int8": "gemmlowp"})

TFLM = Profile(
    "tflm", "TensorFlow Lite Micro (the tflite-micro package's reference kernels)",
    {"fc_requantize": "fixed-point", "add_requantize": "fixed-point", "mul_requantize": "fixed-point-f64",
     "batch_matmul_requantize": "fixed-point-f64", "softmax_int8": "gemmlowp"},
    notes=("TFLite Micro is built without TFLITE_SINGLE_ROUNDING (no build file defines it): "
           "MultiplyByQuantizedMultiplier rounds twice, as LiteRT's does; what differs is that "
           "FULLY_CONNECTED uses it instead of LiteRT's double-precision rounding, and that "
           "FULLY_CONNECTED, MUL and BATCH_MATMUL multiply the scales in double where LiteRT "
           "multiplies them in float32.",))

XNNPACK = Profile(
    "xnnpack", "LiteRT default resolver: XNNPACK delegate + builtin kernels for the rest",
    {"fc_requantize": "fp32", "add_requantize": "xnnpack", "mul_requantize": "xnnpack-fp32",
     "batch_matmul_requantize": "fp32", "softmax_int8": "float-lut"},
    notes=("Not delegated in int8 MobileBERT (run by LiteRT's builtin kernels, same values as the "
           "reference ones except SOFTMAX's float table): SOFTMAX, GATHER, CAST, the last STRIDED_SLICE, and every "
           "BATCH_MATMUL whose rhs zero point is not 0."))

XNNPACK_AARCH64 = Profile(
    "xnnpack-aarch64", "LiteRT default resolver on aarch64: XNNPACK delegate + builtin kernels "
    "for the rest, as LiteRT's aarch64 wheels (clang) build them",
    {**XNNPACK.choices, "softmax_int8": "uint16-lut"},
    notes=("XNNPACK's aarch64 qs8-qc8w GEMMs (neon_mlal, neondot, neoni8mm) requantize with float "
           "per-channel scales rounded to nearest-even, as its x86 kernels do (measured: the fp32 "
           "rule matches them); what differs from the xnnpack profile is the builtin int8 SOFTMAX, "
           "which on aarch64 is the uint16 table.",))

_LITERT20_NOTE = ("LiteRT 2.0.x's XNNPACK delegate takes the BATCH_MATMULs whose rhs zero point "
                  "is not 0 and computes them without it (measured on x86_64 and aarch64, 2.0.3); "
                  "2.1.6, 2.2.0 and 2.3.0 leave them to the builtin kernel.")

XNNPACK_LITERT20 = Profile(
    "xnnpack-litert2.0", "LiteRT 2.0.x default resolver (x86_64)",
    {**XNNPACK.choices, "batch_matmul_requantize": "fp32-rhs-zero-point-dropped"}, notes=(_LITERT20_NOTE,))

XNNPACK_AARCH64_LITERT20 = Profile(
    "xnnpack-aarch64-litert2.0", "LiteRT 2.0.x default resolver on aarch64",
    {**XNNPACK_AARCH64.choices, "batch_matmul_requantize": "fp32-rhs-zero-point-dropped"},
    notes=(_LITERT20_NOTE,))

BUILTIN_AARCH64 = Profile(
    "builtin-aarch64", "LiteRT optimized builtin kernels (BUILTIN) on aarch64, as LiteRT's aarch64 "
    "wheels (clang) build them",
    {**LITERT_REF.choices, "softmax_int8": "uint16-lut"},
    notes=("Measured (LiteRT 2.3.0, docs/device.md): the aarch64 builtin kernels compute what the "
           "reference ones do (FULLY_CONNECTED's ruy path included: its double-precision "
           "requantization, not the fp32 one of XNNPACK) except int8 SOFTMAX's uint16 table.",))

_LITERT1_NOTE = ("LiteRT 1.x's builtin int8 BATCH_MATMUL (the one XNNPACK leaves to it: a non-zero "
                 "rhs zero point) rounds once on aarch64; 2.x rounds twice, as the reference does. "
                 "Measured on emulated aarch64 dumps of 1.2.0 and 1.4.0.")

XNNPACK_AARCH64_LITERT1 = Profile(
    "xnnpack-aarch64-litert1", "LiteRT 1.x default resolver on aarch64",
    {**XNNPACK_AARCH64.choices, "batch_matmul_requantize": "single-round"}, notes=(_LITERT1_NOTE,))

BUILTIN_AARCH64_LITERT1 = Profile(
    "builtin-aarch64-litert1", "LiteRT 1.x optimized builtin kernels on aarch64",
    {**BUILTIN_AARCH64.choices, "batch_matmul_requantize": "single-round"}, notes=(_LITERT1_NOTE,))

PROFILES: dict[str, Profile] = {p.name: p for p in (LITERT_REF, TFLM, XNNPACK, XNNPACK_AARCH64,
                                                      BUILTIN_AARCH64, XNNPACK_LITERT20,
                                                      XNNPACK_AARCH64_LITERT20, XNNPACK_AARCH64_LITERT1,
                                                      BUILTIN_AARCH64_LITERT1)}
DEFAULT = LITERT_REF.name


#: The profile that reproduces each runtime ``verify --against`` / ``dump --resolver`` names.
#: LiteRT's optimized builtin kernels (``builtin``) have no profile of their own: litert-ref.
PROFILE_FOR_RUNTIME = {"ref": "litert-ref", "builtin": "litert-ref", "default": "xnnpack",
                       "tflm": "tflm"}

#: The same on an aarch64 machine (a dump's "machine"), where LiteRT's wheels take other kernels.
PROFILE_FOR_RUNTIME_AARCH64 = {**PROFILE_FOR_RUNTIME, "default": "xnnpack-aarch64",
                               "builtin": "builtin-aarch64"}

#: (runtime, profile) pairs that are bit-identical by construction: verify demands every tensor.
#: The aarch64 pairs: measured identical on every tensor of aarch64 dumps (LiteRT 2.3.0,
#: docs/device.md), so a difference there is news, not rounding noise.
EXACT_PAIRS = frozenset({("ref", "litert-ref"), ("tflm", "tflm"), ("default", "xnnpack-aarch64"),
                         ("builtin", "builtin-aarch64"), ("default", "xnnpack-aarch64-litert2.0"),
                         ("default", "xnnpack-aarch64-litert1"), ("builtin", "builtin-aarch64-litert1")})


def profile_for_runtime(against: str, machine: str | None = None, runtime: str | None = None) -> str:
    """The profile to compare a runtime with (the default one where none reproduces it);
    ``machine``: where it ran (platform.machine(), e.g. a dump's), this one when None;
    ``runtime``: its name and version (``"ai-edge-litert 2.0.3"``), for the versions whose
    arithmetic differs from the current one."""
    import platform

    aarch64 = (machine or platform.machine()) in ("aarch64", "arm64")
    table = PROFILE_FOR_RUNTIME_AARCH64 if aarch64 else PROFILE_FOR_RUNTIME
    name = table.get(against, DEFAULT)
    # the versions measured to compute otherwise (docs/device.md's table)
    version = runtime[len("ai-edge-litert "):] if runtime and runtime.startswith("ai-edge-litert ") else ""
    if against == "default" and version.startswith("2.0."):
        name = XNNPACK_AARCH64_LITERT20.name if aarch64 else XNNPACK_LITERT20.name
    elif against == "ref" and version.startswith("1.2."):
        name = TFLM.name            # its reference FULLY_CONNECTED still requantized in fixed point
    elif aarch64 and against in ("default", "builtin") and version.startswith(("1.2.", "1.4.")):
        name = (XNNPACK_AARCH64_LITERT1 if against == "default" else BUILTIN_AARCH64_LITERT1).name
    return name if name in PROFILES else DEFAULT


def rule_of_source(source: str) -> Rule | None:
    """The rule whose source a kernel reports (PreparedOp.rule), None for rules no profile varies."""
    for rules in RULES.values():
        for rule in rules.values():
            if rule.source == source:
                return rule
    return None


def get_profile(profile: str | Profile | None) -> Profile:
    """A profile by name (None: the default); an unknown name is an InputError."""
    if profile is None:
        return PROFILES[DEFAULT]
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise InputError(f"unknown numerics profile '{profile}': choose one of "
                         f"{', '.join(PROFILES)}") from None
