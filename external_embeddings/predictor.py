"""Serve K external models from one store: texts are tokenized and mapped to vectors once.

Every model must have been trained with this store (same fingerprint and dim) and the same
tokenizer. Models may differ in sequence length: with pre-padding and pre-truncation, the
input for a shorter length is the tail of the longest one, so one mapping still serves all.
Models may also differ in vocabulary (``STORE_VOCABULARY=false`` keeps the baseline's words):
texts are then mapped once per distinct vocabulary, since each drops other words.
"""

import itertools
import json
from pathlib import Path

import keras
import numpy as np

from . import tokenizer
from .errors import InputError
from .model import MANIFEST_FILE, MODEL_FILE, load_model, read_manifest

BATCH_TEXTS = 256  # texts mapped and run at a time, so memory stays flat for any number of texts


def find_model_dirs(models_dir):
    """Every folder under ``models_dir`` (itself included) that holds a saved model.

    Hidden folders are skipped: an interrupted or concurrent save leaves ``.NAME.partial-*`` and
    ``.NAME.old-*`` folders beside a run, and they are not models to serve.
    """
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise InputError(models_dir, "is not a folder", "give the folder holding the trained models")
    found = sorted(p.parent for p in models_dir.rglob(MODEL_FILE)
                   if not any(part.startswith(".") for part in p.relative_to(models_dir).parts))
    if not found:
        raise InputError(models_dir, f"holds no {MODEL_FILE}",
                         "train one with pretrained_external_word_embeddings.py and point --models at its OUTPUT_DIR")
    return found


def check_manifest(manifest, where, store):
    """Refuse a model that is not external, was trained with another store, or lacks a field."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("store", {}), dict):
        raise InputError(where, "is not a model manifest", "re-run the script that wrote it")
    if manifest.get("kind") != "external":
        raise InputError(where, f"is a {manifest.get('kind', 'unknown')} model, not an external one "
                         "(its vectors are inside it)", "serve only models from pretrained_external_word_embeddings.py")
    trained = manifest.get("store", {})
    if trained.get("fingerprint") != store.fingerprint or trained.get("dim") != store.dim:
        raise InputError(where, f"was trained with store {trained.get('path')} (fingerprint "
                         f"{str(trained.get('fingerprint'))[:12]}, dim {trained.get('dim')}), not with "
                         f"{store.path} (fingerprint {store.fingerprint[:12]}, dim {store.dim})",
                         "open the store it was trained with, or retrain it on this one")
    if manifest.get("tokenizer") != tokenizer.SETTINGS:
        raise InputError(where, "uses other tokenizer settings than this version", "retrain it with this version")
    length, labels = manifest.get("sequence_length"), manifest.get("labels")
    if type(length) is not int or length < 1:
        raise InputError(where, f"has no valid sequence_length (got {length!r})", "re-run the script that wrote it")
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise InputError(where, "has no list of label names", "re-run the script that wrote it")


def check_model(model, manifest, where, dim):
    """Refuse a model whose real input or output shape disagrees with its manifest."""
    length, labels = manifest["sequence_length"], manifest["labels"]
    if tuple(model.input_shape[1:]) != (length, dim):
        raise InputError(where, f"takes inputs of shape {tuple(model.input_shape[1:])}, but its manifest says "
                         f"sequence_length {length} of dimension {dim}", "re-run the script that wrote it")
    if tuple(model.output_shape[1:]) != (len(labels),):
        raise InputError(where, f"has {model.output_shape[-1]} outputs but its manifest names {len(labels)} labels",
                         "re-run the script that wrote it")


def read_vocabulary(model_dir, manifest):
    """The words a model knows: None for every word of the store, else a set read from its file."""
    name = manifest.get("vocabulary")
    if name == "store":
        return None
    where = Path(model_dir) / MANIFEST_FILE
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".json"):
        raise InputError(where, f"names no vocabulary (got {name!r}): it was saved by an older version",
                         "retrain it with this version")
    path = Path(model_dir) / name
    try:
        words = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "is missing", "copy the whole folder the script wrote") from None
    except ValueError as e:
        raise InputError(path, f"is not valid JSON ({e})", "re-run the script that wrote it") from None
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise InputError(path, "is not a list of words", "re-run the script that wrote it")
    return frozenset(words)


class Predictor:
    """One store and K models; ``predict(texts)`` runs every model on one shared mapping."""

    def __init__(self, store, models_dir):
        self.store, self.models = store, {}
        root = Path(models_dir)
        for model_dir in find_model_dirs(root):
            manifest = read_manifest(model_dir)
            where = model_dir / MANIFEST_FILE
            check_manifest(manifest, where, store)
            vocabulary = read_vocabulary(model_dir, manifest)
            model = load_model(model_dir)
            check_model(model, manifest, where, store.dim)
            name = model_dir.relative_to(root).as_posix() if model_dir != root else root.resolve().name
            self.models[name] = (model, manifest, vocabulary)
        # Models that know the same words share one mapping, made at the longest of their lengths.
        self.groups = {}
        for name, (_, _, vocabulary) in self.models.items():
            self.groups.setdefault(vocabulary, []).append(name)

    def stream(self, texts):
        """Yield, for each text in order, ``{model name: {"label", "probability", "probabilities",
        "known_words"}}``, ``BATCH_TEXTS`` at a time, so memory stays flat for any number of texts.

        ``known_words`` counts the words the model has a vector for: 0 means the answer is the
        one for an empty text. The example's CNN never sees the last position of its input, so
        a text needs two known words before its own words count at all.
        """
        texts = iter(texts)
        while chunk := list(itertools.islice(texts, BATCH_TEXTS)):
            yield from self._predict_chunk(chunk)

    def predict(self, texts):
        """The results of ``stream`` as a list."""
        return list(self.stream(texts))

    def _predict_chunk(self, texts):
        tokenizer.check_texts(texts)
        tokens = [tokenizer.tokenize(t) for t in texts]
        words = [word for doc in tokens for word in doc]
        found = self.store.lookup(words)  # once for every model and vocabulary
        per_model = {}
        for vocabulary, names in self.groups.items():
            word_index = found if vocabulary is None else \
                {word: found.get(word, 0) for word in dict.fromkeys(words) if word in vocabulary}
            ids = [tokenizer.to_ids(doc, word_index) for doc in tokens]
            known = [int(np.count_nonzero(row)) for row in ids]
            longest = max(self.models[name][1]["sequence_length"] for name in names)
            # The one mapping these models share, made a tensor once rather than once per model.
            vectors = keras.ops.convert_to_tensor(self.store.gather(tokenizer.pad(ids, longest)))
            for name in names:
                model, manifest, _ = self.models[name]
                length = manifest["sequence_length"]
                inputs = vectors if length == longest else vectors[:, -length:]
                probabilities = keras.ops.convert_to_numpy(model.predict_on_batch(inputs))
                per_model[name] = (probabilities, manifest["labels"], known)
        for i in range(len(texts)):
            yield {name: {"label": labels[int(np.argmax(p[i]))], "probability": float(np.max(p[i])),
                          "probabilities": dict(zip(labels, map(float, p[i]))), "known_words": known[i]}
                   for name, (p, labels, known) in ((name, per_model[name]) for name in self.models)}
