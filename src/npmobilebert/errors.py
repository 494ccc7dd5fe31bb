"""Exceptions raised by npmobilebert.

Every error the package raises because of bad input (a corrupt model, an
operator it cannot run, a tensor name that does not exist) derives from
:class:`NpMobileBertError`, so callers -- the CLI in particular -- can catch
one class and print ``str(error)``, which is always a single clear line.
"""

from __future__ import annotations


class NpMobileBertError(Exception):
    """Base: every error the package raises on bad input; str() is one clear line."""


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
        return str(self.args[0]) if self.args else ""
