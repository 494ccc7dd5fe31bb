"""npmobilebert: a glass box for quantized TFLite transformers."""

__version__ = "0.1.0"
