"""The 1D CNN both scripts train, and how a trained model is saved and loaded with its manifest.

Keras is imported inside the functions, so that importing the file names and readers here
(results.py, the benchmarks' memory workers) does not start TensorFlow.
"""

import contextlib
import json
import os
import sys
import warnings
import zipfile
from pathlib import Path

from ..errors import InputError

MODEL_FILE, MANIFEST_FILE = "model.keras", "manifest.json"
# An externalized model hands its "mask" input to its inner model (models/rebuild.py), whose
# output then has no mask; Keras warns about that once per process, though nothing is lost.
warnings.filterwarnings("ignore", message=r"Layer 'after_embedding' \(of type Functional\) was passed an input "
                        "with a mask")


@contextlib.contextmanager
def native_logs_hidden():
    """Hide TensorFlow's C++ start-up log, which 2.21 prints whatever TF_CPP_MIN_LOG_LEVEL says.

    File descriptor 2 points at /dev/null while TensorFlow loads; Python errors raised inside
    still reach the user, since they are printed after the descriptor is restored.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def conv_classifier(inputs, x, num_classes):
    """The Keras example's CNN on top of ``x`` (the embedded sequence), compiled as there."""
    import keras

    x = keras.layers.Conv1D(128, 5, activation="relu")(x)
    x = keras.layers.MaxPooling1D(5)(x)
    x = keras.layers.Conv1D(128, 5, activation="relu")(x)
    x = keras.layers.MaxPooling1D(5)(x)
    x = keras.layers.Conv1D(128, 5, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    return model


def read_json(path, missing_fix="copy the whole folder the script wrote"):
    """A JSON file a script wrote beside a model; an InputError when it is missing or damaged."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "is missing", missing_fix) from None
    except ValueError as e:
        raise InputError(path, f"is not valid JSON ({e})", "re-run the script that wrote it") from None


def read_manifest(model_dir):
    """The manifest saved beside a model; an InputError when it is missing or unreadable."""
    return read_json(Path(model_dir) / MANIFEST_FILE, "give a folder written by one of the two scripts")


def check_model_file(model_dir):
    """``model.keras`` of a run folder, refused when missing or damaged whichever runtime serves it:
    it is the model's source (``model.onnx`` is exported from it)."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise InputError(path, "is missing", "give a folder written by one of the two scripts")
    # Keras reports a damaged file as "File not found"; a .keras file is a zip archive, so say so.
    if not zipfile.is_zipfile(path):
        raise InputError(path, "is damaged (not a .keras zip archive)", "re-run the script that wrote it")
    return path


def load_model(model_dir):
    """Load ``model.keras`` from a run folder, turning Keras' errors into one clear InputError."""
    import keras

    path = check_model_file(model_dir)
    try:
        return keras.saving.load_model(path, safe_mode=True)  # never run code from a model file
    except Exception as e:  # Keras raises many types for a damaged file; the user needs one message
        raise InputError(path, f"cannot be loaded ({type(e).__name__}: {str(e)[:200]})",
                         "re-run the script that wrote it") from None
