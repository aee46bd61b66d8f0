"""Text to token lists to padded id arrays, as the Keras 2 ``Tokenizer`` and ``pad_sequences`` did.

As in Keras 2's ``texts_to_sequences``, a word outside the vocabulary is dropped, not kept as a
zero: the text closes up around it. A word inside the vocabulary that has no vector keeps its
place as id 0, a zero vector, as the original's zero rows of the embedding matrix did.

Keras 3 removed ``keras.preprocessing.text`` (Tokenizer, text_to_word_sequence), which the
original scripts used, so its behaviour is rebuilt here. Padding is done here too rather than
with ``keras.utils.pad_sequences`` because the store must work without importing TensorFlow; a
test checks that both agree.
"""

import functools
from collections import Counter

import numpy as np

from ..errors import InputError

# The Keras 2 Tokenizer's defaults: these characters become spaces, text is lower-cased and
# split on single spaces. U+00A0 is not a separator there, so it is not one here either.
FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
SETTINGS = {"lower": True, "filters": FILTERS, "split": " ", "padding": "pre", "truncating": "pre",
            "out_of_vocabulary": "dropped"}
_TO_SPACES = str.maketrans(FILTERS, " " * len(FILTERS))


def check_texts(texts, where="text"):
    """Refuse what is not a text: a non-string, or a string that cannot be UTF-8 (lone surrogates)."""
    for number, text in enumerate(texts, start=1):
        if not isinstance(text, str):
            raise InputError(f"{where} {number}", f"is a {type(text).__name__}, not a string", "send texts as strings")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InputError(f"{where} {number}", f"is not valid UTF-8 ({text[e.start:e.end]!r} at character "
                             f"{e.start})", "send UTF-8 text") from None


def tokenize(text):
    """Split one text into tokens exactly as Keras 2's ``text_to_word_sequence`` did."""
    return [token for token in text.lower().translate(_TO_SPACES).split(" ") if token]


def words(text, filters=FILTERS, lower=True, split=" "):
    """Keras 2's ``text_to_word_sequence`` with any of its settings, step by step as it did.

    Python's ``str.lower`` (full Unicode, "İ" becomes two characters) is what Keras 2 used, so
    it is used here too. ``split`` must not be empty (``str.split`` refuses it, as Keras 2 did).
    """
    if lower:
        text = text.lower()
    return [token for token in text.translate(_to_split(filters, split)).split(split) if token]


@functools.lru_cache(maxsize=64)
def _to_split(filters, split):
    """The translation table that turns each filter character into ``split``, made once per setting."""
    return str.maketrans({c: split for c in filters})


def build_vocabulary(token_lists, max_num_words):
    """Index the ``max_num_words - 1`` most frequent words as 1, 2, ...; 0 is padding and unknown.

    Ties keep the order of first appearance, as the Keras 2 Tokenizer's stable sort did.
    """
    counts = Counter(token for tokens in token_lists for token in tokens)
    return {word: i for i, (word, _) in enumerate(counts.most_common(max_num_words - 1), start=1)}


def to_ids(tokens, word_index):
    """Map tokens to ids; a word outside ``word_index`` is dropped, as Keras 2's Tokenizer did."""
    return np.fromiter((word_index[token] for token in tokens if token in word_index), dtype=np.int64)


def pad(sequences, length, padding="pre", truncating="pre"):
    """Stack id sequences into an ``(N, length)`` int32 array, as ``pad_sequences`` does.

    Pre-truncation keeps the last ``length`` ids and post-truncation the first; pre-padding puts
    the zeros in front and post-padding behind. The scripts' models use "pre" for both.
    """
    out = np.zeros((len(sequences), length), dtype=np.int32)
    for row, ids in zip(out, sequences):
        kept = ids[-length:] if truncating == "pre" else ids[:length]
        if len(kept):
            if padding == "pre":
                row[length - len(kept):] = kept
            else:
                row[:len(kept)] = kept
    return out
