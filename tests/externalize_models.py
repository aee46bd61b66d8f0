"""Tiny originals built the way their authors build them, for the externalize tests.

- ``keras_io_model``: the keras-io "pretrained word embeddings" example: a TextVectorization
  adapted on the texts, a frozen Embedding(len(vocabulary) + 2, dim) filled from the vectors with
  zero rows for words they lack, a small CNN, and the end-to-end model that takes raw strings.
- ``keras2_models``: tf.keras (Keras 2) model as the older blog post made it: a
  ``Tokenizer`` fitted on the texts and saved with ``to_json``, an Embedding with
  ``mask_zero=True`` filled the same way, an LSTM (or GRU), saved as ``.h5``.

Weights stay random (nothing is trained): the tests are about equal predictions.
"""

import json
import os
from pathlib import Path

import numpy as np

from conftest import COMMON, DIM, TOPICS, UNKNOWN, vector_rows

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
WORDS = [w for words in TOPICS.values() for w in words] + COMMON
# Words the vectors lack, so their rows are zero; "zorblax" also appears in check texts.
NO_VECTOR = UNKNOWN + ["florp", "glimmix"]


def corpus(count=30, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS + NO_VECTOR, size=int(rng.integers(3, 25)))).capitalize() + "."
            for _ in range(count)]


def embedding_matrix(index_words, rows, vectors=None):
    """keras-io's loop: row i is the vector of word i, zeros where the vectors lack the word."""
    vectors = dict(vector_rows()) if vectors is None else vectors
    matrix = np.zeros((rows, DIM), dtype=np.float32)
    for i, word in index_words:
        if word in vectors:
            matrix[i] = vectors[word]
    return matrix


def keras_io_model(path, length=20, labels=3, seed=0, vectors=None, mask_zero=False, second_embedding=False):
    """The keras-io end-to-end string model, saved as a .keras file; returns the path."""
    import keras

    keras.utils.set_random_seed(seed)
    vectorizer = keras.layers.TextVectorization(max_tokens=200, output_sequence_length=length)
    vectorizer.adapt(corpus())
    voc = vectorizer.get_vocabulary()
    num_tokens = len(voc) + 2
    embedding_layer = keras.layers.Embedding(num_tokens, DIM, trainable=False, mask_zero=mask_zero)
    embedding_layer.build((1,))
    embedding_layer.set_weights([embedding_matrix(enumerate(voc), num_tokens, vectors)])
    int_sequences_input = keras.Input(shape=(None,), dtype="int32")
    x = embedding_layer(int_sequences_input)
    if second_embedding:
        x = keras.layers.Add()([x, keras.layers.Embedding(num_tokens, DIM)(int_sequences_input)])
    x = keras.layers.Conv1D(16, 3, activation="relu")(x)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Conv1D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    preds = keras.layers.Dense(labels, activation="softmax")(x)
    model = keras.Model(int_sequences_input, preds)
    string_input = keras.Input(shape=(1,), dtype="string")
    end_to_end_model = keras.Model(string_input, model(vectorizer(string_input)))
    end_to_end_model.save(path)
    return Path(path)


KERAS2_SCRIPT = r'''
import json, sys
import numpy as np
import tf_keras as keras
from tf_keras.preprocessing.text import Tokenizer
for spec in json.loads(sys.argv[1]):
    keras.utils.set_random_seed(spec["seed"])
    tokenizer = Tokenizer(num_words=spec["num_words"], oov_token=spec["oov_token"])
    tokenizer.fit_on_texts(spec["texts"])
    open(spec["tokenizer"], "w").write(tokenizer.to_json())
    rows = min(spec["num_words"] or 10**9, len(tokenizer.word_index) + 1)
    matrix = np.zeros((rows, spec["dim"]), dtype="float32")
    for word, i in tokenizer.word_index.items():
        if i < rows and word in spec["vectors"]:
            matrix[i] = spec["vectors"][word]
    if spec["padding_row"]:
        matrix[0] = 0.25
    rnn = {"LSTM": keras.layers.LSTM, "GRU": keras.layers.GRU}[spec["rnn"]]
    model = keras.Sequential([
        keras.layers.Embedding(rows, spec["dim"], weights=[matrix], input_length=spec["maxlen"], trainable=False,
                               mask_zero=spec["mask_zero"]),
        rnn(12),
        keras.layers.Dense(spec["labels"], activation=spec["activation"]),
    ])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="rmsprop")
    model.save(spec["model"])
'''


def keras2_spec(folder, rnn="LSTM", maxlen=15, num_words=None, oov_token=None, mask_zero=True, labels=3, seed=0,
                padding_row=False, activation="softmax", vectors=None):
    """What keras2_models builds into ``folder``: model.h5 and tokenizer.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vectors = dict(vector_rows()) if vectors is None else vectors
    return {"seed": seed, "num_words": num_words, "oov_token": oov_token, "texts": corpus(), "dim": DIM,
            "vectors": {w: [float(x) for x in np.asarray(v, dtype=np.float32)] for w, v in vectors.items()},
            "maxlen": maxlen, "mask_zero": mask_zero, "rnn": rnn, "labels": labels, "padding_row": padding_row,
            "activation": activation, "tokenizer": str(folder / "tokenizer.json"), "model": str(folder / "model.h5")}


def keras2_models(*specs):
    """tf.keras Sequentials saved as model.h5 beside tokenizer.json, made by tf-keras in one subprocess
    (as their authors' own Keras 2 would); returns [(model path, tokenizer path)] in order."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", KERAS2_SCRIPT, json.dumps(specs)], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    return [(Path(spec["model"]), Path(spec["tokenizer"])) for spec in specs]
