"""The tokenizer and padding against the real Keras 2 code (tf-keras), on real 20 Newsgroups posts.

The original scripts used Keras 2's ``Tokenizer(num_words)``, ``texts_to_sequences`` and
``pad_sequences``; Keras 3 removed the first two. tf-keras still ships them, so the pair's inputs
are checked against them, not against hand-written expectations.
"""

import numpy as np
import pytest

from conftest import TRAIN_TAR, real_posts
from external_embeddings.text import tokenizer

tf_keras = pytest.importorskip("tf_keras")


@pytest.fixture(scope="module")
def posts():
    """The bodies of 600 real posts, read straight from the archive."""
    if not TRAIN_TAR.is_file():
        pytest.skip(f"{TRAIN_TAR} is not here")
    texts = real_posts(600)
    assert len(texts) == 600
    return texts


@pytest.mark.parametrize("num_words, length", [(20000, 1000), (500, 1000), (2000, 40)])
def test_baseline_inputs_equal_keras2_tokenizer_and_pad_sequences(posts, num_words, length):
    reference = tf_keras.preprocessing.text.Tokenizer(num_words=num_words)
    reference.fit_on_texts(posts)
    expected = tf_keras.utils.pad_sequences(reference.texts_to_sequences(posts), maxlen=length)

    tokens = [tokenizer.tokenize(text) for text in posts]
    word_index = tokenizer.build_vocabulary(tokens, num_words)
    assert word_index == {w: i for w, i in reference.word_index.items() if i < num_words}
    ours = tokenizer.pad([tokenizer.to_ids(t, word_index) for t in tokens], length)
    assert ours.dtype == expected.dtype
    np.testing.assert_array_equal(ours, expected)
    # The small vocabularies drop words, and the short length truncates: the cases that differ.
    assert num_words > len(reference.word_index) or (ours != 0).sum() < sum(map(len, tokens))


def test_tokens_equal_keras2_text_to_word_sequence(posts):
    for text in posts:
        assert tokenizer.tokenize(text) == tf_keras.preprocessing.text.text_to_word_sequence(text)
