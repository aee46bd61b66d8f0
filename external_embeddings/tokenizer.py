"""Text to token lists to padded id arrays, as the Keras 2 ``Tokenizer`` and ``pad_sequences`` did.

Keras 3 removed ``keras.preprocessing.text`` (Tokenizer, text_to_word_sequence), which the
original scripts used, so its behaviour is rebuilt here. Padding is done here too rather than
with ``keras.utils.pad_sequences`` because the store must work without importing TensorFlow; a
test checks that both agree.
"""

from collections import Counter

import numpy as np

# The Keras 2 Tokenizer's defaults: these characters become spaces, text is lower-cased and
# split on single spaces. U+00A0 is not a separator there, so it is not one here either.
FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
SETTINGS = {"lower": True, "filters": FILTERS, "split": " ", "padding": "pre", "truncating": "pre"}
_TO_SPACES = str.maketrans(FILTERS, " " * len(FILTERS))


def tokenize(text):
    """Split one text into tokens exactly as Keras 2's ``text_to_word_sequence`` did."""
    return [token for token in text.lower().translate(_TO_SPACES).split(" ") if token]


def build_vocabulary(token_lists, max_num_words):
    """Index the ``max_num_words - 1`` most frequent words as 1, 2, ...; 0 is padding and unknown.

    Ties keep the order of first appearance, as the Keras 2 Tokenizer's stable sort did.
    """
    counts = Counter(token for tokens in token_lists for token in tokens)
    return {word: i for i, (word, _) in enumerate(counts.most_common(max_num_words - 1), start=1)}


def to_ids(tokens, word_index):
    """Map tokens to ids; a word outside ``word_index`` keeps its position as id 0 (a zero vector)."""
    return np.fromiter((word_index.get(token, 0) for token in tokens), dtype=np.int64, count=len(tokens))


def pad(sequences, length):
    """Stack id sequences into an ``(N, length)`` int32 array, pre-padded and pre-truncated.

    Pre-truncation keeps the last ``length`` ids, as ``pad_sequences(truncating="pre")`` does.
    """
    out = np.zeros((len(sequences), length), dtype=np.int32)
    for row, ids in zip(out, sequences):
        kept = ids[-length:]
        if len(kept):
            row[length - len(kept):] = kept
    return out
