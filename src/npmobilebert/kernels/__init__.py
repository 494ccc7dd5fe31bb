"""One small module per op family; a registry maps an op name to its *prepare* function.

prepare(ctx) does everything that depends only on constants and quantization parameters
(multipliers, shifts, folded zero-point terms, lookup tables) -- as TFLite's Prepare does -- and
returns a PreparedOp whose ``run`` does the arithmetic on the inputs (TFLite's Eval).
"""

from __future__ import annotations

from .base import KERNELS, OpContext, PreparedOp, prepare_op
from . import (  # noqa: F401  (importing registers the kernels)
    activations,
    batch_matmul,
    elementwise,
    fully_connected,
    quantize,
    reduce,
    shape_ops,
    softmax,
)

__all__ = ["KERNELS", "OpContext", "PreparedOp", "prepare_op"]
