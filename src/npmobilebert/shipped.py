"""Where the shipped default models are: in the installed package, or in a source checkout.

A wheel carries them as the data package ``npmobilebert/models/`` (pyproject.toml maps the
checkout's ``models/`` there); a source checkout -- an editable install, or ``src/`` on the
path -- has them in ``models/`` beside ``src/``. Neither depends on the current directory.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputError

DEFAULT_MODEL_NAME = "mobilebert_int8.tflite"

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE_DIR.parents[1]          # src/npmobilebert -> the checkout, when it is one
# installed from a wheel first; then the checkout this module was imported from
_CANDIDATE_DIRS = [_PACKAGE_DIR / "models"]
if (_CHECKOUT / "pyproject.toml").is_file():
    _CANDIDATE_DIRS.append(_CHECKOUT / "models")


def shipped_model_path(name: str) -> Path:
    """A shipped model by file name (``mobilebert_int8.tflite``, ``mobilebert_dynamic.tflite``)."""
    for directory in _CANDIDATE_DIRS:
        path = directory / name
        if path.is_file():
            return path
    raise InputError(f"no shipped model {name!r} (looked in {', '.join(str(d) for d in _CANDIDATE_DIRS)}); "
                     "pass a model path (-m MODEL)")


def default_model_path() -> Path:
    """The shipped default model (the README's main job): int8 tweet polarity."""
    return shipped_model_path(DEFAULT_MODEL_NAME)
