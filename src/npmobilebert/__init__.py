"""npmobilebert: a glass box for quantized TFLite transformers.

The Python API: ``npmobilebert.classify(texts)``, ``npmobilebert.Classifier(model, engine)``
(classify.py) and ``npmobilebert.default_model_path()`` (shipped.py).
"""

__version__ = "0.1.0"

# Imported here, not on first use: importing the submodule npmobilebert.classify binds the
# package attribute ``classify`` to that module, and this import rebinds it to the function
# once, before any other import of the submodule could.
from .classify import Classification, Classifier, classify  # noqa: E402
from .shipped import default_model_path  # noqa: E402

__all__ = ["Classification", "Classifier", "classify", "default_model_path"]
