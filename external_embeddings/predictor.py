"""Serve K external models from one store: texts are tokenized and mapped to vectors once.

Every model must have been trained with this store (same fingerprint and dim) and the same
tokenizer. Models may differ in sequence length: with pre-padding and pre-truncation, the
input for a shorter length is the tail of the longest one, so one mapping still serves all.
"""

from pathlib import Path

import keras
import numpy as np

from . import tokenizer
from .errors import InputError
from .model import MODEL_FILE, load_model, read_manifest

BATCH_TEXTS = 256  # texts mapped and run at a time, so memory stays flat for any number of texts


def find_model_dirs(models_dir):
    """Every folder under ``models_dir`` (itself included) that holds a saved model."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise InputError(models_dir, "is not a folder", "give the folder holding the trained models")
    found = sorted(p.parent for p in models_dir.rglob(MODEL_FILE))
    if not found:
        raise InputError(models_dir, f"holds no {MODEL_FILE}",
                         "train one with pretrained_external_word_embeddings.py and point --models at its OUTPUT_DIR")
    return found


def check_manifest(manifest, where, store):
    """Refuse a model that is not external or was trained with another store."""
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


class Predictor:
    """One store and K models; ``predict(texts)`` runs every model on one shared mapping."""

    def __init__(self, store, models_dir):
        self.store, self.models = store, {}
        root = Path(models_dir)
        for model_dir in find_model_dirs(root):
            manifest = read_manifest(model_dir)
            check_manifest(manifest, model_dir / "manifest.json", store)
            name = str(model_dir.relative_to(root)) if model_dir != root else model_dir.name
            self.models[name] = (load_model(model_dir), manifest)
        self.length = max(m["sequence_length"] for _, m in self.models.values())

    def predict(self, texts):
        """For each text, ``{model name: {"label", "probability", "probabilities"}}``."""
        results = []
        for start in range(0, len(texts), BATCH_TEXTS):
            tokens = [tokenizer.tokenize(t) for t in texts[start:start + BATCH_TEXTS]]
            # The one mapping all models share, made a tensor once rather than once per model.
            vectors = keras.ops.convert_to_tensor(self.store.batch(tokens, self.length))
            per_model = {}
            for name, (model, manifest) in self.models.items():
                length = manifest["sequence_length"]
                inputs = vectors if length == self.length else vectors[:, -length:]
                probabilities = keras.ops.convert_to_numpy(model.predict_on_batch(inputs))
                per_model[name] = (probabilities, manifest["labels"])
            for i in range(len(tokens)):
                results.append({name: {"label": labels[int(np.argmax(p[i]))], "probability": float(np.max(p[i])),
                                       "probabilities": dict(zip(labels, map(float, p[i])))}
                                for name, (p, labels) in per_model.items()})
        return results
