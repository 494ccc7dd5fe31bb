"""Tweet normalisation (text.normalize_tweet_v1), how a model asks for it, and classify's reading
warning (text.reading_warning). Every text here is made up for the tests.

The expected emoji names are the Unicode CLDR short names (what the ``emoji`` package writes), with
``_``/``-`` as spaces; the expected hashtag words and emoticon names follow the documented rules.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npmobilebert.errors import InputError
from npmobilebert.inputs import InputMaker, model_metadata
from npmobilebert.model import load_model
from npmobilebert.text import Tokenizer, normalize_tweet, normalize_tweet_v1, normalizer

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "mobilebert_int8.tflite"
TINY = ROOT / "tests" / "fixtures" / "tiny_int8.tflite"

needs_emoji = pytest.mark.skipif(importlib.util.find_spec("emoji") is None,
                                 reason="the emoji package is not installed")


def shipped_vocab() -> str:
    return bytes(load_model(str(SHIPPED)).packed_files["vocab.txt"]).decode("utf-8")


@pytest.fixture(scope="module")
def vocab() -> str:
    return shipped_vocab()


@needs_emoji
@pytest.mark.parametrize("text, expected", [
    ("new bank 😍", "new bank smiling face with heart eyes"),
    ("thanks 👍🏽👍", "thanks thumbs up thumbs up"),            # skin tone dropped
    ("sad day 😢 for us", "sad day crying face for us"),
])
def test_emoji_become_their_names(text, expected):
    assert normalize_tweet_v1(text) == expected


@needs_emoji
@pytest.mark.parametrize("text, expected", [
    ("works again :)", "works again smiling face"),
    ("so slow :( today", "so slow frowning face today"),
    ("ha :D ;-) <3", "ha grinning face winking face red heart"),
    ("meh :/.", "meh confused face ."),
    ("meet at 3:00 or 10:30", "meet at 3:00 or 10:30"),        # not emoticons
    ("see http://example.com/:)", "see http"),                 # a URL stays http
])
def test_emoticons_become_words(text, expected):
    assert normalize_tweet_v1(text) == expected


@needs_emoji
@pytest.mark.parametrize("text, expected", [
    ("#BestBankEver", "best bank ever"),
    ("new #iPhone5 day", "new i phone 5 day"),
    ("#BMW #love #Top10Cars", "bmw love top 10 cars"),
    ("#best_bank", "best bank"),
])
def test_hashtags_become_words(text, expected):
    assert normalize_tweet_v1(text) == expected


@needs_emoji
def test_mentions_urls_and_entities_as_before():
    text = "@SomeBank fixed it &amp; more at https://example.com/x"
    assert normalize_tweet_v1(text) == normalize_tweet(text) == "@user fixed it & more at http"


@needs_emoji
@pytest.mark.parametrize("text", [
    "Just switched banks and the new one is so much better",
    "@someone the app crashed again, 3:00 am... http://example.com",
    "Ünïcödé accents & numbers 42 stay as they were!",
])
def test_ids_unchanged_without_emoji_emoticons_or_hashtags(vocab, text):
    plain, v1 = Tokenizer(vocab, 64), Tokenizer(vocab, 64, "tweet-v1")
    np.testing.assert_array_equal(v1.encode(text).input_ids, plain.encode(text).input_ids)
    assert v1.ids_batch([text]) == plain.ids_batch([text])


@needs_emoji
def test_emoji_names_are_words_of_the_vocab(vocab):
    tok = Tokenizer(vocab, 64, "tweet-v1")
    tokens = tok.encode("😍 :) 😢 👍").tokens
    assert "[UNK]" not in tokens
    assert {"smiling", "heart", "crying", "thumbs"} <= set(tokens)


def test_shipped_models_keep_the_default_normalisation():
    for name in ("mobilebert_int8.tflite", "mobilebert_dynamic.tflite"):
        model = load_model(str(ROOT / "models" / name))
        assert "normalize" not in model_metadata(model)
        tokenizer = InputMaker(model).tokenizer
        assert tokenizer.normalize is normalize_tweet
        # emoji are still [UNK] and hashtags one '#' plus pieces, as the models were trained
        tokens = tokenizer.encode("love it 😍 #BestBankEver").tokens
        assert "[UNK]" in tokens and "#" in tokens


def with_metadata(model, **entries):
    meta = model_metadata(model) | entries
    return dataclasses.replace(model, metadata=model.metadata | {"npmobilebert": json.dumps(meta).encode()})


@needs_emoji
def test_a_model_flagged_tweet_v1_reads_emoji_by_name():
    model = with_metadata(load_model(str(SHIPPED)), normalize="tweet-v1")
    tokenizer = InputMaker(model).tokenizer
    assert tokenizer.normalize is normalize_tweet_v1
    tokens = tokenizer.encode("love it 😍 #BestBankEver").tokens
    assert "[UNK]" not in tokens and {"smiling", "heart", "best", "bank", "ever"} <= set(tokens)


@pytest.mark.parametrize("name", ["tweet-v9", 3, ["tweet-v1"], "x\n" * 10_000])
def test_an_unknown_normalisation_is_refused(name):
    model = with_metadata(load_model(str(SHIPPED)), normalize=name)
    with pytest.raises(InputError, match="normalisation") as refused:
        InputMaker(model).tokenizer
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200   # model data, escaped and bounded
    with pytest.raises(InputError, match="normalisation"):
        normalizer(name)


@pytest.mark.slow
@pytest.mark.tools
@needs_emoji
def test_flag_written_into_a_file_is_read_by_classify(tmp_path):
    """The metadata entry as tools/convert.py writes it (ship_polarity.py passes it), in a real file."""
    pytest.importorskip("tensorflow")
    sys.path.insert(0, str(ROOT / "tools"))
    import convert

    from npmobilebert.classify import Classifier

    data = TINY.read_bytes()
    meta = json.loads(convert.read_metadata(data))
    flagged = convert.add_metadata(data, convert.METADATA_NAME, json.dumps(meta | {"normalize": "tweet-v1"}).encode())
    # add_metadata rewrites the FlatBuffer only: the packed files (vocab, labels) travel behind it
    tail = data[data.index(b"PK\x03\x04"):]
    path = tmp_path / "flagged.tflite"
    path.write_bytes(flagged + tail)
    clf = Classifier(path, engine="numpy")
    assert clf._engine.maker.tokenizer.normalize is normalize_tweet_v1
    assert Classifier(TINY, engine="numpy")._engine.maker.tokenizer.normalize is normalize_tweet


# -- classify's reading warning ----------------------------------------------------------------------

@pytest.mark.parametrize("text, sign", [
    ("😍😍 🙌", "[UNK]"),                                    # emoji only, default normalisation
    ("Это лучший банк, я очень доволен", "not Latin"),       # Cyrillic
    ("この銀行は最高です", "not Latin"),                      # Japanese
    ("Ich liebe meine neue Bank, sie ist viel besser", "words"),   # German: mostly pieces of words
    ("Questo telefono è fantastico, lo consiglio a tutti", "words"),   # Italian
])
def test_reading_warning(vocab, text, sign):
    warning = Tokenizer(vocab, 64).reading_warning(text)
    assert warning is not None and sign in warning


@pytest.mark.parametrize("text", [
    "Just switched banks and the new one is so much better",
    "@someone the app crashed again http://example.com",
    "BMW X5 ftw",
    "lol",
    "Metallica tonight in Zwickau #YOLO #np",     # names and tags the vocab lacks: still English
])
def test_no_reading_warning_for_english(vocab, text):
    assert Tokenizer(vocab, 64).reading_warning(text) is None


@needs_emoji
def test_emoji_only_is_read_by_a_tweet_v1_model(vocab):
    assert Tokenizer(vocab, 64, "tweet-v1").reading_warning("😍😍 🙌") is None
    # its hashtags become lower-case words the vocab may lack: still no warning for English
    assert Tokenizer(vocab, 64, "tweet-v1").reading_warning("Metallica tonight #YOLO #BestGigEver") is None


def test_api_warning_never_changes_the_label():
    from npmobilebert.classify import Classifier, predict

    texts = ["😍😍", "Это лучший банк", "この銀行は最高です",
             "Just switched banks and the new one is so much better"]
    results = Classifier(SHIPPED, engine="litert-ref").predict(texts)
    assert [r.warning is not None for r in results] == [True, True, True, False]
    assert [r.label for r in results] == predict(str(SHIPPED), texts, "litert-ref").predicted


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "npmobilebert.cli", *args], capture_output=True, text=True,
                          encoding="utf-8")


def test_cli_classify_shows_the_warning():
    texts = ["Это лучший банк", "Just switched banks and the new one is so much better"]
    text_out = run_cli("classify", *texts)
    assert text_out.returncode == 0, text_out.stderr
    lines = text_out.stdout.splitlines()
    assert len(lines) == 3 and lines[1].startswith("  warning:") and "not Latin" in lines[1]
    json_out = run_cli("classify", "--json", *texts)
    assert json_out.returncode == 0, json_out.stderr
    results = json.loads(json_out.stdout)
    assert "not Latin" in results[0]["warning"] and results[1]["warning"] is None
    plain = [line.split()[0] for line in lines if not line.startswith("  warning:")]
    assert plain == [r["label"] for r in results]
