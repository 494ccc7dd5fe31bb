"""Tweets -> model inputs: normalisation and WordPiece tokenisation (the `tokenizers` package).

The vocabulary travels inside the model file (a packed ``vocab.txt``), so a model is
self-contained. Normalisation, chosen for tweets:
- URLs become the token ``http`` (their text carries no polarity and wastes sequence length);
- @mentions become ``@user`` (as in TweetEval; names are not evidence of polarity);
- HTML entities left by the Twitter API (``&amp;`` ...) are unescaped;
- runs of whitespace collapse to one space.
Lower-casing and accent stripping are BERT-uncased's own (done by the tokenizer).

A model trained with more (``normalize_tweet_v1``: emoji, emoticons and hashtags as words) says so
in its metadata (``"normalize": "tweet-v1"``, written by tools/ship_polarity.py); only then does
the tokenizer apply it, so a model reads text exactly as it was trained to.

``reading_warning`` tells when a text is unlikely to be read well by an English WordPiece model:
mostly ``[UNK]`` pieces, mostly non-Latin letters, or mostly words that are not in the vocabulary.
"""

from __future__ import annotations

import html
import re
import unicodedata
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


# Western emoticons -> words of the BERT uncased vocab (the names of the emoji they stand for, as
# the emoji package writes those). Only whole tokens: "3:00" or "http://" are not emoticons.
EMOTICONS = {
    ":)": "smiling face", ":-)": "smiling face", "(:": "smiling face", ":]": "smiling face", "=)": "smiling face",
    ":d": "grinning face", ":-d": "grinning face", "xd": "grinning squinting face",
    ";)": "winking face", ";-)": "winking face",
    ":(": "frowning face", ":-(": "frowning face", "):": "frowning face", ":[": "frowning face", "=(": "frowning face",
    ":'(": "crying face", ":,(": "crying face",
    ":p": "face with tongue", ":-p": "face with tongue",
    ":/": "confused face", ":-/": "confused face", ":\\": "confused face",
    ":|": "neutral face", ":-|": "neutral face",
    ":o": "face with open mouth", ":-o": "face with open mouth",
    "<3": "red heart", "</3": "broken heart", "^_^": "smiling face", "-_-": "expressionless face",
}
_EMOTICON = re.compile(r"(?<!\S)(" + "|".join(re.escape(e) for e in sorted(EMOTICONS, key=len, reverse=True))
                       + r")(?=$|[\s.,!?])", re.IGNORECASE)
_HASHTAG = re.compile(r"#(\w+)")
# A hashtag's words: capitalised or lower-case runs, upper-case runs (acronyms), digit runs.
_HASHTAG_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^\W\d_]+")
# Skin tones say nothing about polarity and would add four words to every emoji that has one.
_SKIN_TONE = re.compile(r"_(?:light|medium-light|medium|medium-dark|dark)_skin_tone")


def _emoji_words(text: str) -> str:
    try:
        import emoji
    except ImportError:
        raise InputError("this model reads emoji by name: it needs the emoji package (pip install emoji)") from None
    # demojize: "😍" -> ":smiling_face_with_heart-eyes:" (CLDR short names, English)
    named = emoji.demojize(text, delimiters=("\x00", "\x00"))
    return re.sub(r"\x00([^\x00]*)\x00",
                  lambda m: " " + _SKIN_TONE.sub("", m.group(1)).replace("_", " ").replace("-", " ") + " ", named)


def _hashtag_words(match: re.Match) -> str:
    return " ".join(w.lower() for w in _HASHTAG_WORD.findall(match.group(1)))


def normalize_tweet_v1(text: str) -> str:
    """``normalize_tweet`` and the vocab-friendly forms of what BERT's uncased vocab lacks:
    emoji -> their English names (the ``emoji`` package: "😍" -> "smiling face with heart eyes"),
    emoticons -> the same kind of names (EMOTICONS: ":)" -> "smiling face"), hashtags -> their words
    ("#BestBankEver2" -> "best bank ever 2": camel case and digits; an all-lower-case tag stays one
    word). URLs and @mentions as ``normalize_tweet``."""
    text = normalize_tweet(text)
    text = _EMOTICON.sub(lambda m: " " + EMOTICONS[m.group(1).lower()] + " ", text)
    text = _emoji_words(text)
    text = _HASHTAG.sub(_hashtag_words, text)
    return _SPACES.sub(" ", text).strip()


# The normalisations a model's metadata may name ("normalize"); absent: normalize_tweet.
NORMALIZERS = {"tweet-v1": normalize_tweet_v1}


def normalizer(name):
    """The text normalisation a model's metadata names (None: the default, normalize_tweet)."""
    if name is None:
        return normalize_tweet
    if not isinstance(name, str) or name not in NORMALIZERS:
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."   # model data: escaped, bounded
        raise InputError(f"the model asks for text normalisation {shown}, which this version of npmobilebert "
                         f"does not know (known: {', '.join(NORMALIZERS)})")
    return NORMALIZERS[name]


@dataclass
class Encoded:
    input_ids: np.ndarray        # int32 [1, seq_len]
    attention_mask: np.ndarray   # int32 [1, seq_len]
    token_type_ids: np.ndarray   # int32 [1, seq_len]
    tokens: list[str]
    truncated: bool


class Tokenizer:
    """BERT uncased WordPiece with ``[CLS] ... [SEP]`` and padding to the model's length."""

    def __init__(self, vocab_text: str, seq_len: int, normalization: str | None = None):
        self.normalize = normalizer(normalization)   # first: an unknown name is refused before any work
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
        enc = self._encode_enough(self.normalize(text))   # adds [CLS] ... [SEP]
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
        encs = self._tok.encode_batch([self.normalize(t) for t in texts])
        return [self._truncate(list(enc.ids)) for enc in encs]

    def reading_warning(self, text: str) -> str | None:
        """Why the model is unlikely to read ``text`` well, or None (see ``reading_warning``)."""
        return reading_warning(self, text)

    def _truncate(self, items: list, sep=None) -> list:
        """Keep the first seq_len - 1 items and end with [SEP], when longer than seq_len."""
        if len(items) <= self.seq_len:
            return items
        return items[: self.seq_len - 1] + [self.vocab["[SEP]"] if sep is None else sep]


# The English-only check (reading_warning). Each share is of a count of at least MIN_COUNT (one or
# two unusual words in a short English tweet are normal) and must exceed one half: "most".
MIN_COUNT = 2
# Whole words, hashtags aside (#YOLO, #np: tags, not language)
_WORD = re.compile(r"(?<![#\w])[^\W\d_]+")


def _strip_accents(word: str) -> str:
    """Lower case without combining marks: how BERT uncased compares a word with its vocab."""
    return "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")


def reading_warning(tokenizer: Tokenizer, text: str) -> str | None:
    """A one-line reason when a text is unlikely to be read well by an English WordPiece model, else
    None. Three cheap signs:
    - most of its word pieces (as the model reads them) are ``[UNK]`` (emoji without the tweet-v1
      normalisation, symbols, scripts the vocab lacks);
    - most of its letters are not Latin (Cyrillic, CJK, Arabic ...): another language;
    - most of its lower-case words are not whole words of the vocab (Latin-script text in another
      language: an English word is usually one vocab entry, a foreign one is cut into pieces).
      Capitalised words and hashtags are left out: names of brands, bands and places are often not
      in the vocab, and a tweet of a name and a tag is still English.
    It never changes an answer: the caller shows it beside the label."""
    pieces = [t for t in tokenizer._tok.encode(tokenizer.normalize(text)).tokens if t not in ("[CLS]", "[SEP]")]
    unknown = sum(t == "[UNK]" for t in pieces)
    if len(pieces) >= MIN_COUNT and unknown > len(pieces) / 2 or pieces and unknown == len(pieces):
        return (f"{unknown} of its {len(pieces)} tokens are unknown to the model's vocabulary ([UNK]): "
                "the answer says little about this text")
    # the text itself (URLs and @mentions aside), not the model's normalisation: a tweet-v1 model
    # writes hashtags as lower-case words and emoji as English names
    normalized = normalize_tweet(text)
    letters = [c for c in normalized if c.isalpha()]
    non_latin = sum(not unicodedata.name(c, "").startswith("LATIN") for c in letters)
    if len(letters) >= MIN_COUNT and non_latin > len(letters) / 2:
        return (f"{non_latin} of its {len(letters)} letters are not Latin: it looks like another language, "
                "and the model reads English only")
    words = [w for w in _WORD.findall(normalized) if w[0].islower() and w not in ("user", "http")]
    unknown_words = [w for w in words if _strip_accents(w) not in tokenizer.vocab]
    if len(words) > MIN_COUNT and len(unknown_words) > len(words) / 2:
        return (f"{len(unknown_words)} of its {len(words)} lower-case words are not words of the model's "
                "vocabulary: it may be another language, and the model reads English only")
    return None


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
