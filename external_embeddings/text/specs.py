"""A model's tokenizer as a spec in its manifest: made from the original, loaded as a Tokenizer.

Two kinds (see docs/existing-models.md): a Keras 3 ``TextVectorization`` layer
(``text_vectorization``) and a Keras 2 ``Tokenizer`` with ``pad_sequences`` (``keras2``). Each
loaded Tokenizer has ``ids(texts)``, ``(N, L)`` int32 exactly as the original gives, and:

- ``sequences(texts)``: the ids before padding, ``pad``-ed by ``tokenizer.pad(seqs, length,
  padding, truncating)``; ``sequence_key`` is equal for tokenizers with equal sequences, so the
  Predictor tokenizes each text once for models that differ only in length or padding side;
- ``numbered(texts)``: the texts' tokens as numbers shared by every vocabulary of the process
  (``shared_tokens``), equal for tokenizers with equal ``token_key``; ``sequences(texts, numbered)``
  then costs one numpy ``take`` per vocabulary;
- ``key``: ``sequence_key`` plus length and sides, equal for tokenizers with equal ``ids``;
- ``length``, ``padding``, ``truncating``, ``oov_id`` (None when unknown words are dropped),
  ``vocabulary_size`` (ids are below it).
"""

from pathlib import Path

from ..errors import InputError
from . import spec_files
from .keras2_tokenizer import Keras2Tokenizer, spec_from_json
from .text_vectorization import TextVectorizationTokenizer, spec_from_layer

KINDS = {"text_vectorization": ("vocabulary", TextVectorizationTokenizer),
         "keras2": ("word_index", Keras2Tokenizer)}


def spec_from_text_vectorization(layer):
    """(spec, vocabulary list) of a ``TextVectorization`` layer; unsupported settings are refused."""
    return spec_from_layer(layer)


def spec_from_keras2_json(json_text, where, maxlen, padding="pre", truncating="pre"):
    """(spec, word_index dict) of a Keras 2 ``Tokenizer.to_json()`` and its ``pad_sequences`` settings."""
    return spec_from_json(json_text, where, maxlen, padding, truncating)


def _kind(spec, where):
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind not in KINDS:
        raise InputError(where, f"has a tokenizer of kind {kind!r}, which this version does not know",
                         "use one of " + ", ".join(KINDS))
    return KINDS[kind]


def load_tokenizer(model_dir, spec, where=None):
    """The Tokenizer a spec describes, reading the vocabulary file it names from ``model_dir``."""
    where = where or Path(model_dir) / "manifest.json"
    field, make = _kind(spec, where)
    value, path = spec_files.read(model_dir, spec_files.file_name(spec, field, where))
    return make(spec, value, where, path)


def write_spec_files(model_dir, spec, vocabulary):
    """Write the vocabulary (a list) or word index (a dict) to the file ``spec`` names in ``model_dir``."""
    field, make = _kind(spec, "tokenizer spec")
    name = spec_files.file_name(spec, field, "tokenizer spec")
    make(spec, vocabulary, "tokenizer spec")  # never write files that would not load
    spec_files.write(model_dir, name, vocabulary)
