"""Running a group of loaded models on one batch of inputs: Keras, or a lighter runtime.

May use ``models``, ``store``, ``text``, ``errors``; never the predictor or a door above it.

``open_runtime("onnx" | "keras", threads, fuse)`` gives a ``Runtimes``: it loads each model on
the chosen runtime and, when ONNX cannot take a model (no ``model.onnx`` beside it, or ONNX
Runtime cannot load it), on Keras instead, saying so in one log line naming the model. Neither
runtime's library is imported before the first model is loaded, so a worker serving ONNX models
never imports TensorFlow.
"""

import importlib.util
import logging
import os

from ..errors import InputError
from .common import ModelInfo, Unavailable

__all__ = ["DEFAULT", "NAMES", "ModelInfo", "Runtimes", "Unavailable", "available_cores", "open_runtime"]

NAMES = ("onnx", "keras")
# Keras (its group's models fused): on bench/bench_runtime.py's mixed traffic it served more texts
# per second than ONNX Runtime, which holds a fifth of the memory and is ready in seconds
# (docs/runtime.md says when to choose which).
DEFAULT = "keras"
log = logging.getLogger("external_embeddings.runtime")


def available_cores():
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads(workers=1):
    """Threads per worker when none are given: the worker's share of the cores it really has."""
    return max(1, available_cores() // max(1, workers))


def check_choice(runtime, threads):
    """Refuse an unknown runtime or a negative thread count (as the command line names them)."""
    if runtime not in NAMES:
        raise InputError("--runtime", f"is {runtime!r}", "choose " + " or ".join(NAMES))
    if threads is not None and (type(threads) is not int or threads < 0):
        raise InputError("--threads", f"is {threads!r}", "give a whole number >= 1, or 0 for the library's own default")


def check_installed(name):
    """Refuse, in one line, a runtime whose library this environment lacks (e.g. Keras in a venv
    made from requirements-serve.txt), without importing it."""
    module = {"onnx": "onnxruntime", "keras": "keras"}[name]
    if importlib.util.find_spec(module) is not None:
        return
    if name == "keras":
        raise InputError("--runtime keras", "needs Keras, which is not installed here (models without model.onnx "
                         "need it too)", "serve with --runtime onnx, after python -m external_embeddings export "
                         "MODELS in the training environment")
    raise InputError("--runtime onnx", "needs onnxruntime, which is not installed here",
                     "pip install -r requirements-serve.txt")


class Runtimes:
    """The chosen runtime, and Keras behind it for the models it cannot run."""

    def __init__(self, name, threads, fuse):
        self.name, self.threads, self.fuse = name, threads, fuse
        self._made = {}

    def get(self, name):
        if name not in self._made:
            check_installed(name)
            if name == "onnx":
                from .onnx_runtime import OnnxRuntime

                self._made[name] = OnnxRuntime(self.threads)
            else:
                from .keras_runtime import KerasRuntime

                self._made[name] = KerasRuntime(self.threads, self.fuse)
        return self._made[name]

    def load(self, model_dir, manifest, where, name):
        """(runtime, model, info) for one model folder; Keras, with one log line, if ONNX cannot run it."""
        runtime = self.get(self.name)
        try:
            model = runtime.load(model_dir, manifest, where)
        except Unavailable as why:
            log.warning("model %s runs on Keras, not ONNX: %s", name, why)
            runtime = self.get("keras")
            model = runtime.load(model_dir, manifest, where)
        return runtime, model, runtime.info(model)


def open_runtime(name=None, threads=None, fuse=True):
    """The runtimes for a Predictor: ``name`` (default ``DEFAULT``, or a ``Runtimes`` to share),
    ``threads`` per call (None: every core this process has; 0: the library's own default),
    ``fuse`` (Keras: the models of a group as one model with one output each; False runs each
    model alone, as before)."""
    if isinstance(name, Runtimes):  # a worker's runtimes, shared by the predictors of its reloads
        return name
    name = name or DEFAULT
    check_choice(name, threads)
    return Runtimes(name, default_threads() if threads is None else threads, fuse)
