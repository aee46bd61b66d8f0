"""``model.onnx`` beside ``model.keras``: exported from the same weights and checked against them.

Export needs TensorFlow and tf2onnx (Keras' ``model.export(format="onnx")``), so it happens where
models are trained and saved (``save_run``) or in ``python -m external_embeddings export``;
serving the file needs only ONNX Runtime. The manifest's ``"onnx"`` entry names the file and its
sha256, so a server refuses a file that is not the one exported. A baseline's ``Embedding`` is
inside its ONNX graph, where ONNX Runtime cannot read it, so which of its rows hold a vector is
saved beside it (``embedding_known.npy``) for the predictor's ``known_words``.

Keras, TensorFlow and ONNX Runtime are imported inside the functions.
"""

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir
from ..errors import InputError
from .model import MANIFEST_FILE, load_model, native_logs_hidden, read_manifest

ONNX_FILE, KNOWN_ROWS_FILE = "model.onnx", "embedding_known.npy"
TOLERANCE = 1e-5  # largest difference from Keras' probabilities that an export may show
SAMPLES = 4


class ExportError(Exception):
    """The model could not be exported, or its export does not compute what the Keras model does."""


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def embedding_layer(model):
    """A baseline's frozen Embedding (the first one at the top level, as the script builds it), or None."""
    import keras

    return next((layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)), None)


def sample_inputs_for(model, seed=0):
    """A few inputs the model takes, with an all-padding row first (the empty text): random ids
    below its Embedding's rows, or random vectors; for a model with a second input (an
    externalized model's mask), a random mask beside the vectors, as a dict by input name."""
    rng = np.random.default_rng(seed)
    layer = embedding_layer(model)
    arrays = []
    for tensor in model.inputs:
        shape = (SAMPLES, *tensor.shape[1:])
        if layer is not None:
            x = rng.integers(0, layer.input_dim, size=shape)
        elif "bool" in str(tensor.dtype):
            x = rng.random(shape) < 0.7
        else:
            x = rng.normal(0, 0.5, size=shape)
        x = x.astype(str(tensor.dtype).removeprefix("<dtype: '").removesuffix("'>"))
        x[0] = 0
        arrays.append(x)
    return {t.name: a for t, a in zip(model.inputs, arrays)} if len(arrays) > 1 else arrays[0]


def _run_onnx(path, inputs):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    if isinstance(inputs, dict):  # by name, as the Keras model's inputs are named
        feed = {i.name: np.ascontiguousarray(inputs[i.name.split(":")[0]]) for i in session.get_inputs()}
    else:
        arrays = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        feed = {i.name: np.ascontiguousarray(a) for i, a in zip(session.get_inputs(), arrays)}
    return session.run(None, feed)[0]


def export_onnx(model, model_dir, sample_inputs=None):
    """Write ``model.onnx`` (and a baseline's ``embedding_known.npy``) into ``model_dir``, check
    that it computes the Keras model's probabilities within ``TOLERANCE`` on ``sample_inputs``
    (default: a few made-up ones), and return the manifest's ``"onnx"`` entry.

    Raises ExportError, leaving neither file, if the export fails or differs.
    """
    import keras

    model_dir = Path(model_dir)
    path, known_path = model_dir / ONNX_FILE, model_dir / KNOWN_ROWS_FILE
    if sample_inputs is None:
        sample_inputs = sample_inputs_for(model)
    try:
        # Keras exports only a model that has been called; the call gives the reference answers too.
        expected = keras.ops.convert_to_numpy(model.predict_on_batch(sample_inputs))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf2onnx's deprecation warnings, which the user cannot act on
            model.export(str(path), format="onnx", verbose=False)
        difference = float(np.max(np.abs(_run_onnx(path, sample_inputs) - expected)))
    except Exception as e:  # tf2onnx and ONNX Runtime raise many types; one line says which
        path.unlink(missing_ok=True)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ExportError(f"{type(e).__name__}: {first}") from e
    if not difference <= TOLERANCE:  # also refuses NaN
        path.unlink(missing_ok=True)
        raise ExportError(f"its output differs from the Keras model's by {difference:.3g} (more than {TOLERANCE:g})")
    entry = {"file": ONNX_FILE, "sha256": sha256(path), "max_difference": difference,
             "parameter_bytes": int(sum(np.prod(w.shape) * np.dtype(w.dtype).itemsize for w in model.weights))}
    layer = embedding_layer(model)
    if layer is not None:
        np.save(known_path, np.any(keras.ops.convert_to_numpy(layer.embeddings) != 0, axis=1))
        entry["embedding"] = {"rows": int(layer.input_dim), "known_rows": KNOWN_ROWS_FILE,
                              "sha256": sha256(known_path)}
    return entry


def export_folder(model_dir):
    """Add ``model.onnx`` to a saved run folder (atomically: a reader sees the old folder or the
    new one); return its manifest entry. Raises InputError naming the folder if it cannot."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    if not isinstance(manifest, dict):
        raise InputError(model_dir / MANIFEST_FILE, "is not a model manifest", "re-run the script that wrote it")
    model = load_model(model_dir)
    with atomic_dir(model_dir, replace=True) as tmp:
        shutil.copytree(model_dir, tmp, dirs_exist_ok=True,
                        ignore=lambda _, names: [n for n in names if n in (ONNX_FILE, KNOWN_ROWS_FILE)])
        try:
            manifest["onnx"] = export_onnx(model, tmp)
        except ExportError as e:
            raise InputError(model_dir, f"cannot be exported to ONNX ({e})",
                             "serve it with --runtime keras") from None
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest["onnx"]


def export_quietly(model, model_dir, shown_as, sample_inputs=None):
    """``export_onnx`` for a save that must not fail because of it: the entry, or None after one
    printed line (naming the run as ``shown_as``) saying that the model will run on Keras."""
    try:
        with native_logs_hidden():
            return export_onnx(model, model_dir, sample_inputs)
    except ExportError as e:
        print(f"Not saved: {Path(shown_as) / ONNX_FILE} ({e}); servers will run this model on Keras.")
        return None
