"""What both runtimes share: what the predictor needs to know of a loaded model, and its inputs."""

from dataclasses import dataclass

import numpy as np


class Unavailable(Exception):
    """This runtime cannot run a model (it says why); the model runs on Keras instead."""


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model as the predictor checks and describes it, whichever runtime holds it.

    Shapes leave out the batch axis; ``input_shapes`` and ``input_names`` have one per input, in the
    model's order (an externalized model with a mask takes "vectors" and "mask", in an order of its own). A baseline has
    ``embedding_rows`` (its Embedding's rows) and ``with_vector`` (per row, whether it holds a
    vector, i.e. is not all zeros); others have None.
    """

    runtime: str
    input_shapes: tuple
    output_shape: tuple
    parameter_bytes: int
    embedding_rows: int | None = None
    with_vector: np.ndarray | None = None
    input_names: tuple = ()

    @property
    def input_shape(self):
        """The first input's shape (the only one, but for a model with a mask)."""
        return self.input_shapes[0]


def as_list(inputs):
    """A group's input as a list of arrays: one array, or several (e.g. ids and a mask)."""
    return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]


def tail(arrays, length):
    """Each array cut to its last ``length`` positions: with pre-padding and pre-truncation, the
    tail of the group's longest input is exactly a shorter model's own input."""
    return [a if a.shape[1] == length else a[:, -length:] for a in arrays]
