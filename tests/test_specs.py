"""Tokenizer specs reproduce the originals' ids exactly: a Keras 3 TextVectorization layer and a
Keras 2 Tokenizer with pad_sequences, on 20,000 fuzzed texts each, with no TensorFlow at run time."""

import json
import string

import numpy as np
import pytest

from external_embeddings import InputError
from external_embeddings.text import specs, tokenizer

TEXTS = 20_000
# Unicode spaces that Python's str.split() splits on but TensorFlow's ASCII-only split does not,
# and the six ASCII ones that both split on.
UNICODE_SPACES = ["\x85", "\xa0", "\u1680", *map(chr, range(0x2000, 0x200B)), "\u2028", "\u2029", "\u202f",
                  "\u205f", "\u3000", "\x1c", "\x1d", "\x1e", "\x1f"]
ASCII_SPACES = [" ", "\t", "\n", "\v", "\f", "\r"]
# Letters whose case mapping differs between Python and ASCII-only lowering, or changes length.
LETTERS = ["İ", "ı", "ẞ", "ß", "Σ", "σ", "ς", "ΟΔΟΣ", "Ä", "é", "e\u0301", "ǅ", "Ǆ", "ﬁ", "Д", "中文", "Ω", "K",
           "\u0130stanbul", "ÉCOLE", "naïve", "😀", "\x00", "a\u0308", "Straße"]
BASE = ["the", "The", "THE", "rocket", "Orbit", "moon's", "don't", "rock'n'roll", "e-mail", "U.S.A.", "C++",
        "x_y", "hello", "World", "café", "CAFÉ", "über", "Über", "ångström", "naïve", "日本", "σοφία", "ΣΟΦΙΑ",
        "[UNK]", "[unk]", "unk", "a", "I", "it's", "'quoted'", "#tag", "@user", "50%", "$5", "3.14", "...", "--"]


def fuzzed_texts(count, seed=0):
    """Texts of words drawn from a small list (so that vocabularies hit), decorated with what
    tokenizers disagree on: Unicode spaces and letters, punctuation runs, apostrophes, combining marks."""
    rng = np.random.default_rng(seed)
    punctuation = list(string.punctuation) + ["'", "''", "...", "!?", "«", "»", "“", "”", "—", "¿", "·"]
    words = BASE + LETTERS
    spaces = UNICODE_SPACES + ASCII_SPACES + [s * 2 for s in ASCII_SPACES]
    texts = []
    for n in range(count):
        if n % 997 == 0:
            texts.append("")
            continue
        k = 10_000 if n % 2500 == 1 else int(rng.integers(1, 40))  # a few very long texts
        chosen, how, marks = rng.integers(len(words), size=k), rng.random(k), rng.integers(len(punctuation), size=k)
        gaps = np.where(rng.random(k) < 0.3, rng.integers(len(spaces), size=k), -1)
        pieces = []
        for word, r, mark, gap in zip(chosen.tolist(), how.tolist(), marks.tolist(), gaps.tolist()):
            word = words[word]
            if r < 0.15:
                word = word.upper()
            elif r < 0.25:
                word += punctuation[mark]
            elif r < 0.32:
                word = punctuation[mark] + word
            elif r < 0.36:
                word += "\u0301"
            pieces += [word, spaces[gap] if gap >= 0 else " "]
        texts.append("".join(pieces))
    return texts


@pytest.fixture(scope="module")
def texts():
    return fuzzed_texts(TEXTS)


def test_tensorflow_string_ops_are_ascii_only_as_the_module_says():
    """The layer's lower, strip and split, probed on every code point (the reason for the bytes rules)."""
    import tensorflow as tf

    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    ascii_lower = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
    assert tf.strings.lower(everything).numpy().decode() == everything.translate(ascii_lower)
    stripped = tf.strings.regex_replace(everything, r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']', "")
    assert stripped.numpy().decode() == everything.translate(str.maketrans("", "", string.punctuation))
    spaced = "a".join(everything)
    parts = [part.decode() for part in tf.strings.split(spaced).numpy().tolist()]
    assert parts == [part.decode() for part in spaced.encode().split()]  # bytes.split(): the six ASCII spaces
    assert len(parts) == len(ASCII_SPACES) + 1


@pytest.mark.parametrize("standardize", ["lower_and_strip_punctuation", "lower", "strip_punctuation", None])
def test_text_vectorization_ids_equal_the_layers(texts, standardize, tmp_path):
    import keras

    layer = keras.layers.TextVectorization(max_tokens=300, standardize=standardize, output_sequence_length=20)
    layer.adapt(texts[:3000], batch_size=3000)
    spec, vocabulary = specs.spec_from_text_vectorization(layer)
    assert spec == {"kind": "text_vectorization", "standardize": standardize, "split": "whitespace",
                    "output_sequence_length": 20, "vocabulary": "vocabulary.json"}
    specs.write_spec_files(tmp_path, spec, vocabulary)
    loaded = specs.load_tokenizer(tmp_path, spec)
    expected = keras.ops.convert_to_numpy(layer(texts))  # one call for every text
    ours = loaded.ids(texts)
    assert ours.dtype == np.int32 and ours.shape == (TEXTS, 20)
    assert (ours == 1).any() and (ours == 0).any() and (ours > 1).any()  # OOV, padding and words all met
    assert (ours[:, -1] != 0).sum() > 1000  # and many texts are truncated
    mismatched = np.flatnonzero((ours != expected).any(axis=1))
    assert mismatched.size == 0, [texts[i] for i in mismatched[:3]]
    assert loaded.vocabulary_size == layer.vocabulary_size() and loaded.padding == loaded.truncating == "post"


def test_text_vectorization_keras_io_example_settings(texts, tmp_path):
    """keras-io's "Using pre-trained word embeddings": max_tokens=20000, output_sequence_length=200."""
    import keras

    layer = keras.layers.TextVectorization(max_tokens=20000, output_sequence_length=200, pad_to_max_tokens=True)
    layer.adapt(texts[:2000], batch_size=2000)
    spec, vocabulary = specs.spec_from_text_vectorization(layer)
    specs.write_spec_files(tmp_path, spec, vocabulary)
    loaded = specs.load_tokenizer(tmp_path, spec)
    sample = texts[:4000]
    np.testing.assert_array_equal(loaded.ids(sample), keras.ops.convert_to_numpy(layer(sample)))
    shorter = specs.load_tokenizer(tmp_path, {**spec, "output_sequence_length": 100})
    assert shorter.sequence_key == loaded.sequence_key and shorter.key != loaded.key  # one tokenization for both


@pytest.mark.parametrize("settings, message", [
    ({"standardize": lambda x: x}, "standardize="),
    ({"split": "character"}, "split='character'"),
    ({"ngrams": 2}, "ngrams="),
    ({"output_mode": "multi_hot"}, "output_mode='multi_hot'"),
    ({"ragged": True}, "ragged=True"),
    ({"output_sequence_length": None}, "output_sequence_length=None"),
])
def test_text_vectorization_settings_that_cannot_be_reproduced_are_refused(settings, message):
    import keras

    settings = {"output_sequence_length": 5, **settings}
    if settings.get("output_mode") == "multi_hot":
        settings.pop("output_sequence_length")
    layer = keras.layers.TextVectorization(vocabulary=["a", "b"], **settings)
    with pytest.raises(InputError) as raised:
        specs.spec_from_text_vectorization(layer)
    assert message in str(raised.value) and len(str(raised.value).splitlines()) == 1


KERAS2_CASES = [
    {},
    {"num_words": 60, "oov_token": "<OOV>"},
    {"num_words": 60, "lower": False, "filters": "!?.,'\u00a0"},
    {"split": "\u2028", "filters": string.punctuation + " \t\n", "oov_token": "<OOV>"},
    {"split": "ab", "num_words": 1, "oov_token": "zz"},
]
SIDES = [{"padding": p, "truncating": t} for p in ("pre", "post") for t in ("pre", "post")]


@pytest.mark.parametrize("settings", KERAS2_CASES)
def test_keras2_ids_equal_tokenizer_and_pad_sequences(texts, settings, tmp_path):
    from tf_keras.preprocessing.sequence import pad_sequences
    from tf_keras.preprocessing.text import Tokenizer, tokenizer_from_json

    original = Tokenizer(**settings)
    original.fit_on_texts(texts[:3000])
    restored = tokenizer_from_json(original.to_json())  # as a user reloads it
    sequences = restored.texts_to_sequences(texts)
    loaded = None
    for sides in SIDES:
        spec, word_index = specs.spec_from_keras2_json(original.to_json(), "tokenizer.json", 20, **sides)
        specs.write_spec_files(tmp_path, spec, word_index)
        loaded = specs.load_tokenizer(tmp_path, spec)
        ours = loaded.ids(texts[:3000])  # the whole path, on part of the texts
        np.testing.assert_array_equal(ours, pad_sequences(sequences[:3000], maxlen=20, **sides))
    ours = loaded.sequences(texts)  # and every text, with every padding and truncating side
    assert [list(s) for s in ours] == sequences
    for sides in SIDES:
        expected = pad_sequences(sequences, maxlen=20, **sides)
        padded = tokenizer.pad(ours, 20, **sides)
        assert padded.dtype == expected.dtype and (padded == 0).any() and (padded > 0).any()
        np.testing.assert_array_equal(padded, expected)
    assert max(max(s, default=0) for s in sequences) < loaded.vocabulary_size


def test_the_scripts_rules_are_keras2s_defaults(texts):
    """The scripts' own tokenizer is the keras2 kind with its defaults and OOV dropped."""
    from tf_keras.preprocessing.text import text_to_word_sequence

    sample = texts[:3000]
    assert [tokenizer.tokenize(t) for t in sample] == [text_to_word_sequence(t) for t in sample]
    assert [tokenizer.words(t) for t in sample] == [tokenizer.tokenize(t) for t in sample]


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(char_level=True), "char_level=True"),
    (lambda c: c.update(oov_token="<gone>"), "oov_token='<gone>', which its word_index lacks"),
    (lambda c: c.update(split=""), "split=''"),
    (lambda c: c.update(num_words="10"), "num_words='10'"),
    (lambda c: c.update(word_index=json.dumps({"a": 0})), "word_index that is not"),
    (lambda c: c.pop("word_index"), "is not a Keras 2 Tokenizer's to_json() (KeyError"),
])
def test_keras2_settings_that_cannot_be_reproduced_are_refused(change, message):
    from tf_keras.preprocessing.text import Tokenizer

    original = Tokenizer()
    original.fit_on_texts(["a b c", "b c"])
    document = json.loads(original.to_json())
    change(document["config"])
    with pytest.raises(InputError) as raised:
        specs.spec_from_keras2_json(json.dumps(document), "tok.json", 10)
    assert str(raised.value).startswith("tok.json: ") and message in str(raised.value)
    with pytest.raises(InputError, match="padding='middle'"):
        specs.spec_from_keras2_json(original.to_json(), "tok.json", 10, padding="middle")


def test_unknown_or_damaged_specs_are_refused_with_one_line(tmp_path):
    with pytest.raises(InputError, match="tokenizer of kind 'sentencepiece', which this version does not know"):
        specs.load_tokenizer(tmp_path, {"kind": "sentencepiece"})
    spec = {"kind": "text_vectorization", "standardize": "lower", "split": "whitespace",
            "output_sequence_length": 4, "vocabulary": "../vocabulary.json"}
    with pytest.raises(InputError, match="names no vocabulary file"):
        specs.load_tokenizer(tmp_path, spec)
    spec["vocabulary"] = "vocabulary.json"
    with pytest.raises(InputError, match="vocabulary.json: is missing"):
        specs.load_tokenizer(tmp_path, spec)
    (tmp_path / "vocabulary.json").write_text(json.dumps(["", "[UNK]", "a", "a"]))
    with pytest.raises(InputError, match=f"^{tmp_path / 'vocabulary.json'}: has a vocabulary that holds a word twice"):
        specs.load_tokenizer(tmp_path, spec)
    (tmp_path / "vocabulary.json").write_text(json.dumps(["", "[UNK]", "a"]))
    with pytest.raises(InputError, match=f"^{tmp_path / 'manifest.json'}: has output_sequence_length=0"):
        specs.load_tokenizer(tmp_path, {**spec, "output_sequence_length": 0})  # a setting: the manifest's
    (tmp_path / "vocabulary.json").write_text(json.dumps(["[UNK]", "a"]))
    with pytest.raises(InputError, match="does not start with"):
        specs.load_tokenizer(tmp_path, spec)


def test_a_layer_loaded_from_a_keras_file_gives_the_same_spec_and_ids(texts, tmp_path):
    """``externalize`` reads the layer of a loaded .keras file. Keras saves an adapted vocabulary one
    word a line and reads it back with ``str.splitlines``, so words holding \\x1c-\\x1e, U+0085,
    U+2028 or U+2029 cannot be saved (Keras' own limit); the texts here leave them out."""
    import re

    import keras

    sample = [re.sub("[\x00\x1c\x1d\x1e\x85\u2028\u2029]", " ", t) for t in texts[:3000]]
    layer = keras.layers.TextVectorization(max_tokens=500, output_sequence_length=20)
    layer.adapt(sample, batch_size=3000)
    text_input = keras.Input((1,), dtype="string")
    keras.Model(text_input, layer(text_input)).save(tmp_path / "original.keras")
    loaded = keras.saving.load_model(tmp_path / "original.keras")
    (reloaded,) = [x for x in loaded.layers if isinstance(x, keras.layers.TextVectorization)]
    spec, vocabulary = specs.spec_from_text_vectorization(reloaded)
    assert (spec, vocabulary) == specs.spec_from_text_vectorization(layer)
    specs.write_spec_files(tmp_path, spec, vocabulary)
    expected = keras.ops.convert_to_numpy(loaded.predict_on_batch(np.array(sample, dtype=object)[:, None]))
    np.testing.assert_array_equal(specs.load_tokenizer(tmp_path, spec).ids(sample), expected)


def test_tokenizers_of_different_vocabularies_number_a_text_once_and_keep_their_own_ids():
    """Every vocabulary is an array over one process-wide token numbering (text/shared_tokens.py)."""
    from external_embeddings.text import shared_tokens
    from external_embeddings.text.keras2_tokenizer import Keras2Tokenizer
    from external_embeddings.text.text_vectorization import TextVectorizationTokenizer

    spec = {"kind": "text_vectorization", "standardize": "lower_and_strip_punctuation", "split": "whitespace",
            "output_sequence_length": 6, "vocabulary": "vocabulary.json"}
    a = TextVectorizationTokenizer(spec, ["", "[UNK]", "orbit", "shuttle", "the"])
    b = TextVectorizationTokenizer(spec, ["", "[UNK]", "pitcher", "the", "curve", "orbit"])
    keras2 = {"kind": "keras2", "filters": "!.", "lower": True, "split": " ", "char_level": False, "num_words": None,
              "oov_token": None, "maxlen": 6, "padding": "pre", "truncating": "pre", "word_index": "word_index.json"}
    c = Keras2Tokenizer(keras2, {"the": 1, "curve": 2})
    texts = ["The shuttle reached orbit.", "The pitcher threw a CURVE", "", "orbit orbit zz"]
    assert a.token_key == b.token_key != c.token_key and a.sequence_key != b.sequence_key
    numbered = a.numbered(texts)
    assert [list(s) for s in a.sequences(texts, numbered)] == [[4, 3, 1, 2], [4, 1, 1, 1, 1], [], [2, 2, 1]]
    assert [list(s) for s in b.sequences(texts, numbered)] == [[3, 1, 1, 5], [3, 2, 1, 1, 4], [], [5, 5, 1]]
    assert [list(s) for s in c.sequences(texts)] == [[1], [1, 2], [], []]  # Keras 2 drops unknown words
    size = len(shared_tokens._NUMBERS)
    TextVectorizationTokenizer(spec, ["", "[UNK]", "orbit", "the"])  # known tokens are not numbered again
    assert len(shared_tokens._NUMBERS) == size
    later = TextVectorizationTokenizer(spec, ["", "[UNK]", "threw"])  # numbers grow; older tables still read them
    assert [list(s) for s in a.sequences(["threw orbit"])] == [[1, 2]]
    assert [list(s) for s in later.sequences(["threw orbit"])] == [[2, 1]]
