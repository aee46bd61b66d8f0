"""A model someone already has, read safely: a Keras 3 ``.keras`` file or a Keras 2 ``.h5`` file.

``load_source`` returns the loaded model and ``layer_calls`` lists its layer calls as a flat graph
(nested models inlined), the same way for a Keras 3 model and for a tf-keras one, so that
externalize.py can find the Embedding and rebuild what comes after it.

Keras 3 cannot load every tf-keras ``.h5`` file (an LSTM saved by tf-keras 2.21 fails with
``Unrecognized keyword arguments passed to LSTM: {'time_major': False}``), so a file written by
Keras 2 is read with tf-keras, the library that wrote it: its predictions are the reference.
Neither loader may run code from the file: ``.keras`` files load in Keras' safe mode, and an
``.h5`` file's model config is searched for Lambda layers before any loader sees it, since
tf-keras' safe mode does not cover ``.h5`` files.
"""

import hashlib
import json
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

FIX = "save the model with model.save('model.keras') (Keras 3) or model.save('model.h5') (tf.keras)"


@dataclass
class Source:
    """A loaded model, the library that loaded it ("keras" or "tf_keras"), and its file's identity."""

    path: Path
    model: object
    framework: str
    sha256: str


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _refuse_other_formats(path):
    if not path.exists():
        raise InputError(path, "does not exist", "give a .keras or .h5 model file")
    if path.is_dir() or path.suffix == ".pb":
        what = "a TensorFlow SavedModel" if path.suffix == ".pb" or (path / "saved_model.pb").exists() else "a folder"
        raise InputError(path, f"is {what}, which cannot be read without running its TensorFlow graph",
                         "load it where it was made and " + FIX)
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise InputError(path, f"is not a .keras or .h5 file (got {path.suffix or 'no suffix'})", FIX)


def _named_classes(config):
    """Every ``class_name`` in a model config, nested models and wrappers included."""
    if isinstance(config, dict):
        if isinstance(config.get("class_name"), str):
            yield config["class_name"]
        for value in config.values():
            yield from _named_classes(value)
    elif isinstance(config, list):
        for value in config:
            yield from _named_classes(value)


def _h5_config(path):
    """The model config and Keras version an .h5 file holds; refuses weights-only and Lambda files."""
    import h5py

    if not h5py.is_hdf5(path):
        raise InputError(path, "is damaged or truncated (not an HDF5 file)", "copy the original file again")
    try:
        with h5py.File(path, "r") as f:
            config, version = f.attrs.get("model_config"), f.attrs.get("keras_version", "")
    except OSError as e:
        raise InputError(path, f"is damaged or truncated ({e})", "copy the original file again") from None
    if config is None:
        raise InputError(path, "holds weights only, no model", "save the whole model: model.save('model.h5')")
    try:
        config = json.loads(config.decode() if isinstance(config, bytes) else config)
    except ValueError as e:
        raise InputError(path, f"holds a damaged model config ({e})", "copy the original file again") from None
    if "Lambda" in set(_named_classes(config)):
        raise InputError(path, "holds a Lambda layer (Python code), which safe mode refuses to load",
                         "replace the Lambda with a built-in layer and save the model again")
    return config, version.decode() if isinstance(version, bytes) else str(version)


def _load_keras(path):
    import keras

    if not zipfile.is_zipfile(path):
        raise InputError(path, "is damaged or truncated (not a .keras zip archive)", "copy the original file again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many types for a bad file; the user needs one line
        message = str(e)
        if "Lambda" in message or "safe_mode" in message:
            raise InputError(path, "holds a Lambda layer (Python code), which safe mode refuses to load",
                             "replace the Lambda with a built-in layer and save the model again") from None
        raise InputError(path, f"cannot be loaded ({type(e).__name__}: {message.splitlines()[0][:200] if message else ''})",
                         "check that it is a whole Keras model file") from None


def _load_h5(path):
    """An .h5 file: tf-keras when Keras 2 wrote it (its own reader), else Keras 3."""
    _, version = _h5_config(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if version.startswith("3."):
                import keras

                return keras.saving.load_model(path, safe_mode=True, compile=False), "keras"
            import tf_keras

            return tf_keras.models.load_model(path, compile=False), "tf_keras"
    except Exception as e:
        message = str(e).splitlines()[0][:200] if str(e) else ""
        raise InputError(path, f"cannot be loaded (Keras {version or '?'}: {type(e).__name__}: {message})",
                         "check that it is a whole Keras model file") from None


def load_source(path):
    """Load the model at ``path`` safely; one clear InputError for anything else."""
    path = Path(path)
    _refuse_other_formats(path)
    if path.suffix == ".keras":
        model, framework = _load_keras(path), "keras"
    else:
        model, framework = _load_h5(path)
    return Source(path, model, framework, file_sha256(path))


# A flat graph of layer calls. A tensor is a Ref; a call's args and kwargs hold Refs where the
# model passed tensors (and any constants as they were).

@dataclass(frozen=True)
class Ref:
    number: int


@dataclass
class Call:
    layer: object
    args: list
    kwargs: dict
    outputs: list = field(default_factory=list)


def _is_model(layer):
    return hasattr(layer, "layers") and hasattr(layer, "inputs") and not _is_wrapper(layer)


def _is_wrapper(layer):
    return hasattr(layer, "layer") and not hasattr(layer, "_nodes_by_depth")


def _is_sequential(model):
    return type(model).__name__ == "Sequential"


def _node_parts(node):
    """(layer, args, kwargs, outputs as a flat list) of a graph node, for Keras 3 and tf-keras."""
    if hasattr(node, "operation"):  # Keras 3
        return node.operation, list(node.arguments.args), dict(node.arguments.kwargs), list(node.outputs)
    outputs = node.outputs if isinstance(node.outputs, (list, tuple)) else [node.outputs]
    return node.layer, list(node.call_args), dict(node.call_kwargs), list(outputs)


def _replace(value, refs, where):
    """``value`` with every tensor swapped for its ref; a tensor from outside the graph is refused."""
    if isinstance(value, (list, tuple)):
        return [_replace(v, refs, where) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, refs, where) for k, v in value.items()}
    if id(value) in refs:
        return refs[id(value)]
    if hasattr(value, "_keras_history") or hasattr(value, "shape"):
        raise InputError(where, "passes a tensor that is not a layer's output to a layer", FIX)
    return value


class Graph:
    """Every layer call of a model in an order where inputs come first; nested models inlined."""

    def __init__(self, model, where):
        self.where, self.calls, self._next = where, [], 0
        self.inputs = [self._ref() for _ in _model_inputs(model)]
        self.outputs = self._inline(model, self.inputs)

    def _ref(self):
        self._next += 1
        return Ref(self._next)

    def _inline(self, model, input_refs):
        if _is_sequential(model):
            x = input_refs[0]
            for layer in model.layers:
                if type(layer).__name__ == "InputLayer":
                    continue
                x = self._inline(layer, [x])[0] if _is_model(layer) else self._add(layer, [x], {}, 1)[0]
            return [x]
        inputs = _model_inputs(model)
        if len(inputs) != len(input_refs):
            raise InputError(self.where, f"nests a model of {len(inputs)} inputs that is given {len(input_refs)}", FIX)
        refs = {id(t): r for t, r in zip(inputs, input_refs)}
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                layer, args, kwargs, outputs = _node_parts(node)
                if type(layer).__name__ == "InputLayer":
                    continue
                args, kwargs = _replace(args, refs, self.where), _replace(kwargs, refs, self.where)
                kwargs.pop("mask", None)  # masks travel with the tensors, as in the original
                if _is_model(layer):
                    produced = self._inline(layer, refs_in(args))
                else:
                    produced = self._add(layer, args, kwargs, len(outputs))
                refs.update({id(t): r for t, r in zip(outputs, produced)})
        return [refs[id(t)] for t in _model_outputs(model)]

    def _add(self, layer, args, kwargs, count):
        call = Call(layer, args, kwargs, [self._ref() for _ in range(count)])
        self.calls.append(call)
        return call.outputs


def _flat(value):
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flat(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _flat(v)]
    return [value]


def _model_inputs(model):
    inputs = model.inputs
    return list(inputs.values()) if isinstance(inputs, dict) else list(inputs)


def _model_outputs(model):
    outputs = model.outputs
    return list(outputs.values()) if isinstance(outputs, dict) else list(outputs)


def refs_in(value):
    """The refs among a call's args or kwargs."""
    return [r for r in _flat(value) if isinstance(r, Ref)]
