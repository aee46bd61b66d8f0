"""Keras: each model's ``model.keras``, and a group's models fused into one model with K outputs.

Every ``predict_on_batch`` call costs ~3 ms besides its work (TensorFlow's function call and
its copies), so K models called one by one cost K of those on every batch: single-text
requests ran at 40% of what the CPU gave batched ones. A ``keras.Model`` whose outputs are
the K models' outputs on the one input runs them as one call; its layers are the models'
own, so it holds no second copy of any weight. A request for some of a group's models runs
those alone, as before fusion, rather than tracing a new model for every subset. Externalized
models are fused where they take the very same input (one tokenizer, mapping, length and sides).
"""

import importlib
import logging

from ..models.model import load_model, native_logs_hidden
from ..models.onnx_export import embedding_layer
from .common import ModelInfo, as_list, tail


def _configure_threads(threads):
    """TensorFlow's threads for this process; possible only before its first operation.

    ``threads`` for both pools: within an op (a convolution's rows) and between independent ops
    (a fused group's models side by side). With one inter-op thread, ops that use a single core
    left the other idle: bench_externalize's 8 CNNs, 256 texts a batch on 2 threads, ran 1.16x
    as fast one by one with two inter-op threads, 1.47x fused (4 processes, 16 alternating
    passes). TensorFlow's default is every core for both, which a model served as it is gets."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran something here: it keeps the threads it has
        pass


def _each_model_traces_once(record):
    """Drop TensorFlow's "N out of the last N calls ... triggered tf.function retracing" warning.

    Every loaded model traces its own predict function on its first batch, and TensorFlow counts
    those traces together: serving 5 groups or more printed the warning on the first request, as
    if one function were retraced in a loop. A logging filter, since the warning has no switch."""
    return "triggered tf.function retracing" not in record.getMessage()


class KerasRuntime:
    name = "keras"

    def __init__(self, threads, fuse=True):
        # TensorFlow's C++ start-up chatter, and its search for devices, which logs an error line
        # ("failed call to cuInit") on every machine without a GPU. Listing the devices does not
        # start TensorFlow's runtime, so the threads are still set after it.
        with native_logs_hidden():
            importlib.import_module("keras")
            tf = importlib.import_module("tensorflow")
            if threads:
                _configure_threads(threads)
            tf.config.list_physical_devices()
        logging.getLogger("tensorflow").addFilter(_each_model_traces_once)
        self.fuse = fuse

    def load(self, model_dir, manifest, where):
        return load_model(model_dir)

    def info(self, model):
        import keras
        import numpy as np

        layer = embedding_layer(model)
        return ModelInfo("keras", tuple(tuple(t.shape[1:]) for t in model.inputs), tuple(model.output_shape[1:]),
                         int(sum(np.prod(w.shape) * np.dtype(w.dtype).itemsize for w in model.weights)),
                         None if layer is None else int(layer.input_dim),
                         None if layer is None else np.any(keras.ops.convert_to_numpy(layer.embeddings) != 0, axis=1),
                         tuple(t.name for t in model.inputs))

    def runner(self, members):
        return KerasGroup(members, self.fuse)


class KerasGroup:
    """A group's models: fused into one call when all of them are asked for (and ``fuse``)."""

    def __init__(self, members, fuse):
        self.members = {name: (model, length) for name, model, length in members}
        self.fused = _fuse(members) if fuse and len(members) > 1 else None

    def run(self, names, inputs):
        import keras

        if self.fused is not None and len(names) == len(self.members):
            outputs = self.fused.predict_on_batch(_called_with(inputs))
            return {name: keras.ops.convert_to_numpy(p) for name, p in zip(self.members, outputs) if name in names}
        if isinstance(inputs, dict):  # externalized models' named vectors and mask, the same for all of them
            return {name: keras.ops.convert_to_numpy(self.members[name][0].predict_on_batch(inputs)) for name in names}
        # Made a tensor once for the group, not once per model.
        arrays = [keras.ops.convert_to_tensor(a) for a in as_list(inputs)]
        out = {}
        for name in names:
            model, length = self.members[name]
            x = tail(arrays, length)
            out[name] = keras.ops.convert_to_numpy(model.predict_on_batch(_called_with(x)))
        return out


def _fuse(members):
    """One ``keras.Model``: the group's input(s) at the longest length, each model on its tail;
    called as the longest model is (a dict of named inputs for an externalized model with a mask).

    Each model is wrapped in a model of its own name first: models saved by separate runs carry
    the same names (``functional``), and a Keras model's layers must be named uniquely.
    """
    import keras

    longest = max(length for _, _, length in members)
    first = next(model for _, model, length in members if length == longest)
    inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype) for t in first.inputs]
    outputs = []
    for i, (_, model, length) in enumerate(members):
        own = [keras.Input(shape=t.shape[1:], dtype=t.dtype) for t in model.inputs]
        structure = _named_inputs(model)  # an externalized model with a mask is called with a dict
        called = keras.tree.pack_sequence_as(structure, own) if structure else _called_with(own)
        member = keras.Model(own, model(called), name=f"member_{i}")
        x = [t if length == longest else t[:, -length:] for t in inputs]
        outputs.append(member(_called_with(x)))
    structure = _named_inputs(first)
    return keras.Model(keras.tree.pack_sequence_as(structure, inputs) if structure else inputs, outputs, name="fused")


def _called_with(inputs):
    """A model's inputs as Keras calls it with them: a dict of named inputs as it is, one array
    alone, several as a list."""
    if isinstance(inputs, dict):
        return inputs
    arrays = as_list(inputs)
    return arrays if len(arrays) > 1 else arrays[0]


def _named_inputs(model):
    """A functional model's dict of named inputs (``model.inputs`` is its flattened order), else None."""
    try:
        structure = model.input
    except (AttributeError, ValueError):  # a Sequential, which is called with one tensor
        return None
    return structure if isinstance(structure, dict) else None
