"""Exceptions raised by npmobilebert.

Every error the package raises because of bad input (a corrupt model, an
operator it cannot run, a tensor name that does not exist) derives from
:class:`NpMobileBertError`, so callers -- the CLI in particular -- can catch
one class and print ``str(error)``, which is always a single clear line.
"""

from __future__ import annotations

import re

# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators: whatever a
# terminal would turn into a new line, a carriage return or an escape sequence.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_text(text: object) -> str:
    """A string from a model file (a tensor, op, label or metadata name) or from any other
    input, safe to put in a one-line message: control characters become Python escapes
    (``\\n``, ``\\x1b``), so a name holding a newline cannot fake further lines."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


class NpMobileBertError(Exception):
    """Base: every error the package raises on bad input; str() is one clear line.

    The message is escaped (:func:`escape_text`) whatever it quotes: model-supplied names are
    data, and a newline in one must not split the message or fake a traceback."""

    def __str__(self) -> str:
        return escape_text(super().__str__())


class ModelFormatError(NpMobileBertError):
    """The input is not a valid TFLite model.

    Not a TFLite file, truncated, corrupt, offsets outside the file, tensor or
    buffer indices out of range, buffer sizes that do not match the shape...
    """


class UnsupportedOpError(NpMobileBertError):
    """The model uses an operator (or an operator variant) that is not implemented."""


class InputError(NpMobileBertError):
    """Bad user input other than the model: arguments, input arrays, text, token ids."""


class TensorNotFoundError(NpMobileBertError, KeyError):
    """A tensor name or index that the model does not have.

    Also a :class:`KeyError`, so ``except KeyError`` keeps working for lookups.
    """

    def __str__(self) -> str:
        # KeyError.__str__ would wrap the message in quotes; keep it one plain line.
        return escape_text(self.args[0]) if self.args else ""
