"""The layers after a model's Embedding, rebuilt as a Keras 3 model that takes the vectors.

Each layer is made again from its config (Keras 3 layers through Keras' own serializer, tf-keras
layers through the Keras 3 class of the same name) and given the original's weights, so the new
model holds only built-in layers and loads in safe mode.

Masks: with ``mask_zero=True`` the original's Embedding attaches ``ids != 0`` to its output and
Keras carries it to the layers after it. The new model takes that mask as a second input and
hands it to the rebuilt layers as a nested model's ``mask`` argument; Keras then carries it
exactly as in the original. A mask made from the vectors (``Masking``) would also hide a word
whose vector is zero, and the original does not.
"""

import warnings

from ..errors import InputError
from .source_model import Ref

# Settings that tf-keras writes and Keras 3 no longer takes, with the value that means what
# Keras 3 does anyway; any other value is refused, since dropping it would change the model.
LEGACY_SETTINGS = {"time_major": False}


def _keras3_config(config, where, name):
    """A tf-keras layer config as Keras 3 reads it: legacy settings dropped, nested layers named by module."""
    import keras

    if isinstance(config, list):
        return [_keras3_config(c, where, name) for c in config]
    if not isinstance(config, dict):
        return config
    config = {k: _keras3_config(v, where, name) for k, v in config.items()}
    for key, meaning in LEGACY_SETTINGS.items():
        if key in config and config[key] != meaning:
            raise InputError(where, f"layer {name!r} has {key}={config[key]!r}, which Keras 3 does not support",
                             "externalize supports only settings Keras 3 has")
        config.pop(key, None)
    if isinstance(config.get("class_name"), str) and "config" in config and "module" not in config \
            and hasattr(keras.layers, config["class_name"]):
        config["module"] = "keras.layers"
    return config


def keras3_layer(layer, framework, where):
    """A new, unbuilt Keras 3 layer with ``layer``'s settings."""
    import keras

    class_name = type(layer).__name__
    try:
        if framework == "keras":
            return keras.layers.deserialize(keras.layers.serialize(layer))
        cls = getattr(keras.layers, class_name, None)
        if cls is None or not isinstance(cls, type):
            raise InputError(where, f"has a layer {layer.name!r} of class {class_name}, which Keras 3 does not have",
                             "externalize supports models of built-in Keras layers")
        return cls.from_config(_keras3_config(layer.get_config(), where, layer.name))
    except InputError:
        raise
    except Exception as e:
        raise InputError(where, f"layer {layer.name!r} ({class_name}) cannot be rebuilt in Keras 3 "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                         "externalize supports models of built-in Keras layers") from None


def _substitute(value, tensors):
    if isinstance(value, list):
        return [_substitute(v, tensors) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, tensors) for k, v in value.items()}
    return tensors[value] if isinstance(value, Ref) else value


def _flat_outputs(value):
    return [x for v in value for x in _flat_outputs(v)] if isinstance(value, (list, tuple)) else [value]


def rebuild(start, calls, output, framework, length, dim, mask, where):
    """A Keras 3 model from the vectors (``(None, length, dim)``, input "vectors") to ``output``.

    ``start`` is the Ref of the original Embedding's output, ``calls`` the layer calls after it
    in graph order. With ``mask`` the model takes a second input "mask", ``(None, length)`` bool.
    """
    import keras

    vectors = keras.Input((length, dim), name="vectors")
    tensors = {start: vectors}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' notes on masks a layer drops are about the original too
        for call in calls:
            layer = keras3_layer(call.layer, framework, where)
            produced = _flat_outputs(layer(*_substitute(call.args, tensors), **_substitute(call.kwargs, tensors)))
            tensors.update(zip(call.outputs, produced))
            try:
                layer.set_weights(call.layer.get_weights())
            except ValueError as e:
                raise InputError(where, f"layer {call.layer.name!r}'s weights do not fit its Keras 3 rebuild ({e})",
                                 "externalize supports models of built-in Keras layers") from None
        inner = keras.Model(vectors, tensors[output], name="after_embedding")
        if not mask:
            return inner
        outer_vectors = keras.Input((length, dim), name="vectors")
        mask_input = keras.Input((length,), dtype="bool", name="mask")
        return keras.Model({"vectors": outer_vectors, "mask": mask_input}, inner(outer_vectors, mask=mask_input),
                           name="externalized")
