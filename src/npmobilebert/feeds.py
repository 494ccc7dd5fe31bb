"""Input feeds: the one place that turns a list or a dict of inputs into the graph's order.

Shared by the NumPy interpreter and the LiteRT runners, so both accept (and refuse) the same
things with the same messages. Kept free of heavy imports: boards import it too.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .errors import InputError


def order_inputs(inputs, names: list[str]) -> list:
    """A list in graph order, or a dict by tensor name -> the values in graph order."""
    if isinstance(inputs, Mapping):
        unknown = sorted(set(inputs) - set(names))
        missing = [n for n in names if n not in inputs]
        if unknown or missing:
            raise InputError(f"inputs by name: expected {names}, missing {missing}, unknown {unknown}")
        return [inputs[n] for n in names]
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, (Sequence, np.ndarray)):
        raise InputError(f"inputs must be a list of arrays or a dict by tensor name, "
                         f"not {type(inputs).__name__}")
    if len(inputs) != len(names):
        raise InputError(f"the model takes {len(names)} inputs ({', '.join(names)}), got {len(inputs)}")
    return list(inputs)
