"""Tokens, padding and vectors: both scripts must feed their models exactly the same inputs."""

import keras
import numpy as np
import pytest

from conftest import DIM, write_corpus
from external_embeddings.text import tokenizer
from external_embeddings.text.corpus import load_corpus


def test_tokenize_matches_keras2_text_to_word_sequence():
    assert tokenizer.tokenize("Hello, World!  It's 3.14\tTAB\nline") == ["hello", "world", "it's", "3", "14", "tab",
                                                                           "line"]
    assert tokenizer.tokenize("a\u00a0b") == ["a\u00a0b"]  # U+00A0 was no separator in Keras 2
    assert tokenizer.tokenize("!!!") == []


@pytest.mark.parametrize("length", [1, 5, 12])
def test_pad_matches_keras_pad_sequences(length):
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 50, size=n) for n in (0, 1, 5, 7, 12, 30)]
    expected = keras.utils.pad_sequences(sequences, maxlen=length, padding="pre", truncating="pre")
    np.testing.assert_array_equal(tokenizer.pad(sequences, length), expected)


def test_vocabulary_keeps_most_frequent_words_ties_in_first_seen_order():
    index = tokenizer.build_vocabulary([["b", "a", "c"], ["c", "a", "d"]], max_num_words=4)
    assert index == {"a": 1, "c": 2, "b": 3}
    assert tokenizer.to_ids(["a", "zzz", "b"], index).tolist() == [1, 3]  # a word outside is dropped, as in Keras 2


def test_external_batch_equals_the_baseline_embedding_output(store, tmp_path):
    """The equivalence that makes the comparison fair: same text, same vectors, zeros alike."""
    corpus = load_corpus(write_corpus(tmp_path / "corpus"))
    tokens = [tokenizer.tokenize(t) for t in corpus.texts]
    length = 25
    # The baseline's way: a corpus vocabulary, a matrix of its rows, a frozen Embedding.
    word_index = tokenizer.build_vocabulary(tokens, max_num_words=1000)
    found = store.lookup(word_index)
    matrix = store.gather([0] + [found.get(w, 0) for w in word_index])
    embedding = keras.layers.Embedding(len(matrix), DIM, trainable=False)
    embedding.build((None, length))
    embedding.set_weights([matrix])
    ids = tokenizer.pad([tokenizer.to_ids(t, word_index) for t in tokens], length)
    baseline_inputs = keras.ops.convert_to_numpy(embedding(ids))
    # The external way, with the baseline's vocabulary: the store maps tokens straight to vectors.
    external_inputs = store.batch(tokens, length, vocabulary=word_index)
    np.testing.assert_array_equal(external_inputs, baseline_inputs)
    # Padding, and vocabulary words without a vector, are zero vectors in both.
    assert (ids == 0).any() and not external_inputs[ids == 0].any()
    assert "zorblax" in word_index and "zorblax" not in found
    # With the store's vocabulary, a word without a vector is dropped: the text closes up.
    doc = next(d for d, t in enumerate(tokens) if "zorblax" in t and len(t) < length)
    kept = [w for w in tokens[doc] if w in found]
    np.testing.assert_array_equal(store.batch([tokens[doc]], length)[0, -len(kept):], store.gather(store.ids(kept)))
    assert not store.batch([tokens[doc]], length)[0, :-len(kept)].any()


def test_batch_pads_and_truncates_at_the_front(store):
    batch = store.batch([["orbit"], ["orbit", "moon", "doctor"]], seq_len=2)
    orbit, moon, doctor = (store.gather(store.ids([w]))[0] for w in ("orbit", "moon", "doctor"))
    np.testing.assert_array_equal(batch[0], [np.zeros(DIM), orbit])
    np.testing.assert_array_equal(batch[1], [moon, doctor])
