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


# The rules, by the step they decide. A profile picks one rule per step.
RULES: dict[str, dict[str, Rule]] = {
    # FULLY_CONNECTED int8/int16: the int32 accumulator -> the output scale
    "fc_requantize": {
        "double": Rule(
            "double", "(int32) round((double) acc * in_scale * filter_scale / out_scale)",
            "LiteRT tflite/kernels/internal/reference/integer_ops/fully_connected.h "
            "(FullyConnectedPerChannel with float scales)"),
        "fixed-point": Rule(
            "fixed-point", "MultiplyByQuantizedMultiplier(acc, M0, shift): Q31 high mul, then a "
            "rounding right shift (double rounding)",
            "tflite-micro tensorflow/lite/micro/kernels/fully_connected_common.cc "
            "(CalculateOpDataFullyConnected) + kernels/internal/reference/integer_ops/"
            "fully_connected.h + kernels/internal/common.cc"),
        "fp32": Rule(
            "fp32", "float32 acc * float32 scale, rounded to nearest-even, clamped, + zero point",
            "XNNPACK src/qs8-gemm (fp32 requantization, xnn_qs8_qc8w_conv_minmax_params) + "
            "src/xnnpack/requantization.h"),
    },
    # ADD / SUB / MUL int8: the elementwise requantization
    "elementwise_requantize": {
        "fixed-point": Rule(
            "fixed-point", "inputs << 20, per-input and output (M0, shift) multipliers "
            "(MUL: one multiplier for s1*s2/s_out)",
            "LiteRT tflite/kernels/internal/reference/integer_ops/add.h, mul.h "
            "(tflite-micro has the same files)"),
        "xnnpack": Rule(
            "xnnpack", "ADD: integer multipliers with a rounding shift (qs8-vadd); MUL: float32 "
            "product * scale, rounded to nearest-even (qs8-vmul fp32)",
            "XNNPACK src/qs8-vadd, src/qs8-vmul (fp32 requantization), src/microparams-init.c"),
    },
    # SOFTMAX int8
    "softmax_int8": {
        "gemmlowp": Rule(
            "gemmlowp", "Q5.26 scaled difference, gemmlowp exp_on_negative_values, Q12.19 sum, "
            "GetReciprocal",
            "LiteRT tflite/kernels/internal/reference/softmax.h (tflite-micro "
            "tensorflow/lite/micro/kernels/softmax_common.cc uses the same)"),
        "lut": Rule(
            "lut", "float exp table of the 256 differences, float sum, float reciprocal, "
            "round to int8",
            "LiteRT tflite/kernels/internal/optimized/optimized_ops.h SoftmaxInt8LUT + "
            "activations.cc PopulateSoftmaxLookupTable"),
    },
    # BATCH_MATMUL int8
    "batch_matmul_requantize": {
        "fixed-point": Rule(
            "fixed-point", "MultiplyByQuantizedMultiplier(acc, M0, shift), multiplier from "
            "float(lhs_scale * rhs_scale) / out_scale",
            "LiteRT tflite/kernels/internal/reference/batch_matmul.h; tflite-micro "
            "tensorflow/lite/micro/kernels/batch_matmul.cc"),
    },
}


@dataclass(frozen=True)
class Profile:
    """A runtime's choice of one rule per step."""

    name: str
    runtime: str                       # the runtime it reproduces, in words
    choices: dict[str, str]            # step -> rule name
    notes: tuple[str, ...] = field(default_factory=tuple)

    def rule(self, step: str) -> Rule:
        return RULES[step][self.choices[step]]

    def strategy(self, step: str) -> str:
        """The name of the rule this profile uses for ``step`` (what a kernel dispatches on)."""
        return self.choices[step]


LITERT_REF = Profile(
    "litert-ref", "LiteRT reference kernels (BUILTIN_REF)",
    {"fc_requantize": "double", "elementwise_requantize": "fixed-point",
     "softmax_int8": "gemmlowp", "batch_matmul_requantize": "fixed-point"})

TFLM = Profile(
    "tflm", "TensorFlow Lite Micro (the tflite-micro package's reference kernels)",
    {"fc_requantize": "fixed-point", "elementwise_requantize": "fixed-point",
     "softmax_int8": "gemmlowp", "batch_matmul_requantize": "fixed-point"},
    notes=("TFLite Micro is built without TFLITE_SINGLE_ROUNDING: MultiplyByQuantizedMultiplier "
           "rounds twice, as LiteRT's does; the difference is only which ops use it.",))

PROFILES: dict[str, Profile] = {p.name: p for p in (LITERT_REF, TFLM)}
DEFAULT = LITERT_REF.name


#: The profile that reproduces each runtime ``verify --against`` / ``dump --resolver`` names.
#: LiteRT's optimized builtin kernels (``builtin``) have no profile of their own: litert-ref.
PROFILE_FOR_RUNTIME = {"ref": "litert-ref", "builtin": "litert-ref", "default": "xnnpack",
                       "tflm": "tflm"}

#: (runtime, profile) pairs that are bit-identical by construction: verify demands every tensor.
EXACT_PAIRS = frozenset({("ref", "litert-ref"), ("tflm", "tflm")})


def profile_for_runtime(against: str) -> str:
    """The profile to compare a runtime with (the default one where none reproduces it)."""
    name = PROFILE_FOR_RUNTIME.get(against, DEFAULT)
    return name if name in PROFILES else DEFAULT


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
