"""Tweets -> model inputs: normalisation and WordPiece tokenisation (the `tokenizers` package).

The vocabulary travels inside the model file (a packed ``vocab.txt``), so a model is
self-contained. Normalisation, chosen for tweets:
- URLs become the token ``http`` (their text carries no polarity and wastes sequence length);
- @mentions become ``@user`` (as in TweetEval; names are not evidence of polarity);
- HTML entities left by the Twitter API (``&amp;`` ...) are unescaped;
- runs of whitespace collapse to one space.
Lower-casing and accent stripping are BERT-uncased's own (done by the tokenizer).
"""

from __future__ import annotations

import html
import re
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import InputError

_URL = re.compile(r"(https?://\S+|www\.\S+)", re.IGNORECASE)
_MENTION = re.compile(r"@\w+")
_SPACES = re.compile(r"\s+")
# The first prefix of a long text that is tokenized: 16 characters per token of the model's
# sequence, more than English (~4.5 per WordPiece token) and tweets need.
_FIRST_PREFIX_CHARS_PER_TOKEN = 16


def normalize_tweet(text: str) -> str:
    text = html.unescape(text)
    text = _URL.sub("http", text)
    text = _MENTION.sub("@user", text)
    return _SPACES.sub(" ", text).strip()


@dataclass
class Encoded:
    input_ids: np.ndarray        # int32 [1, seq_len]
    attention_mask: np.ndarray   # int32 [1, seq_len]
    token_type_ids: np.ndarray   # int32 [1, seq_len]
    tokens: list[str]
    truncated: bool


class Tokenizer:
    """BERT uncased WordPiece with ``[CLS] ... [SEP]`` and padding to the model's length."""

    def __init__(self, vocab_text: str, seq_len: int):
        try:
            from tokenizers import BertWordPieceTokenizer
        except ImportError:   # a minimal install on a device (docs/device.md)
            raise InputError("text needs the tokenizers package (pip install tokenizers); "
                             "or give token ids (--ids)") from None

        vocab = {}
        for line in vocab_text.splitlines():
            token = line.rstrip("\r\n")
            if token and token not in vocab:
                vocab[token] = len(vocab)
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in vocab:
                raise InputError(f"the vocabulary has no {special} token")
        self.vocab = vocab
        self.seq_len = seq_len
        self._tok = BertWordPieceTokenizer(vocab, lowercase=True, strip_accents=True,
                                           clean_text=True, handle_chinese_chars=True)
        self._tok.no_truncation()
        self._tok.no_padding()

    def encode(self, text: str, warn: bool = True) -> Encoded:
        if not isinstance(text, str):
            raise InputError("text must be a string")
        _check_utf8(text)
        enc = self._encode_enough(normalize_tweet(text))   # adds [CLS] ... [SEP]
        truncated = len(enc.ids) > self.seq_len
        if truncated and warn:
            warnings.warn(f"text of more than {self.seq_len} tokens truncated to the model's {self.seq_len}",
                          stacklevel=2)
        ids = self._truncate(list(enc.ids))
        tokens = self._truncate(list(enc.tokens), "[SEP]")
        n = len(ids)
        input_ids = np.full((1, self.seq_len), self.vocab["[PAD]"], dtype=np.int32)
        input_ids[0, :n] = ids
        mask = np.zeros((1, self.seq_len), dtype=np.int32)
        mask[0, :n] = 1
        return Encoded(input_ids, mask, np.zeros((1, self.seq_len), dtype=np.int32), tokens, truncated)


    def _encode_enough(self, text: str):
        """The tokenizer's encoding of as much of ``text`` as decides the first seq_len ids.

        Tokenizing a whole 10 MB line costs 1.6 GB (each token carries offsets and strings);
        only its first seq_len - 2 tokens are kept. A prefix is tokenized instead, four times
        longer on each try while it does not decide them: BERT splits the text into words
        (at whitespace and punctuation) before WordPiece and tokenizes each word alone, so the
        tokens of every word but the prefix's last (which the cut may have split) are those
        of the whole text. Once those are at least seq_len - 2, they are the ids kept, and the
        whole text has more (its last word has a token at least): truncated either way.
        """
        limit = _FIRST_PREFIX_CHARS_PER_TOKEN * self.seq_len
        while True:
            enc = self._tok.encode(text[:limit])
            if limit >= len(text):
                return enc
            words = [w for w in enc.word_ids if w is not None]
            if words and sum(w < words[-1] for w in words) >= self.seq_len - 2:
                return enc
            limit *= 4

    def ids_batch(self, texts: list[str]) -> list[list[int]]:
        """Many texts -> their ids ([CLS] ... [SEP], truncated as ``encode`` does), unpadded and
        without warnings: for training and corpus statistics, tokenised in parallel."""
        encs = self._tok.encode_batch([normalize_tweet(t) for t in texts])
        return [self._truncate(list(enc.ids)) for enc in encs]

    def _truncate(self, items: list, sep=None) -> list:
        """Keep the first seq_len - 1 items and end with [SEP], when longer than seq_len."""
        if len(items) <= self.seq_len:
            return items
        return items[: self.seq_len - 1] + [self.vocab["[SEP]"] if sep is None else sep]


def _check_utf8(text: str) -> None:
    """Refuse lone surrogates: what Python makes of non-UTF-8 bytes in a command-line argument
    (surrogateescape), and what the tokenizer cannot encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        code = ord(text[e.start])
        # surrogateescape turns an undecodable byte b (0x80..0xff) into U+DC00 + b
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else "a lone surrogate"
        raise InputError(f"the text is not valid UTF-8 ({what} at character {e.start})") from None
