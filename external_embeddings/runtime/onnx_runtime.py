"""ONNX Runtime: each model's ``model.onnx`` as a session, with no TensorFlow in the process.

One session per model, all of them sharing one memory arena (by default every session keeps
its own, ~90 MB each with these CNNs) and with their threads' spinning off: spinning threads of
K idle sessions took the CPU from the one that ran when another process shared the machine
(0.27x). A group's models then run one after the other on the group's one input, each call
costing ~0.1 ms besides its work. One fused graph of a group's models was measured as well
(docs/runtime.md): no faster, and ONNX Runtime computes every output of a graph whatever is
asked, so a request for one model would pay for all of them.
"""

import hashlib
import threading
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..models.onnx_export import KNOWN_ROWS_FILE, ONNX_FILE
from .common import ModelInfo, Unavailable, as_list, tail

DTYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
          "tensor(double)": np.float64, "tensor(float16)": np.float16, "tensor(bool)": np.bool_}
_arena = threading.Lock()
_arena_made = False
FIX = "export it again: python -m external_embeddings export MODELS"


def _shared_arena(ort):
    """Register the process's one CPU arena, which every session then uses (once per process)."""
    global _arena_made
    with _arena:
        if not _arena_made:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, None)
            _arena_made = True


class OnnxModel:
    """One model's session; ``model(inputs)`` gives its probabilities as numpy, as Keras' model does."""

    def __init__(self, session, info):
        self.session, self.info = session, info
        self.inputs = [(i.name, DTYPES.get(i.type, np.float32)) for i in session.get_inputs()]

    def __call__(self, inputs):
        feed = {name: np.ascontiguousarray(a, dtype) for (name, dtype), a in zip(self.inputs, as_list(inputs))}
        return self.session.run(None, feed)[0]


def _entry(manifest, where):
    """The manifest's ``"onnx"`` entry; Unavailable when the folder predates ONNX export."""
    entry = manifest.get("onnx")
    if entry is None:
        raise Unavailable(f"no {ONNX_FILE} in its folder (saved before; add one with python -m external_embeddings "
                          "export MODELS)")
    if (not isinstance(entry, dict) or entry.get("file") != ONNX_FILE or not isinstance(entry.get("sha256"), str)
            or type(entry.get("parameter_bytes")) is not int):
        raise InputError(where, "has no valid \"onnx\" entry", FIX)
    return entry


def _read_checked(path, digest):
    """The file's bytes if their sha256 is ``digest``; read once, so the bytes checked are the bytes used."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(path, "is missing, but its manifest names it", FIX) from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise InputError(path, "does not match the sha256 its manifest records", FIX)
    return data


def _known_rows(model_dir, entry, where):
    """A baseline's (rows, which rows hold a vector), checked against the manifest."""
    embedding = entry.get("embedding")
    if embedding is None:
        return None, None
    if (not isinstance(embedding, dict) or embedding.get("known_rows") != KNOWN_ROWS_FILE
            or type(embedding.get("rows")) is not int or not isinstance(embedding.get("sha256"), str)):
        raise InputError(where, "has no valid \"onnx\" embedding entry", FIX)
    path = Path(model_dir) / KNOWN_ROWS_FILE
    _read_checked(path, embedding["sha256"])
    known = np.load(path, allow_pickle=False)
    if known.dtype != np.bool_ or known.shape != (embedding["rows"],):
        raise InputError(path, f"holds {known.dtype} of shape {known.shape}, not {embedding['rows']} booleans", FIX)
    return embedding["rows"], known


class OnnxRuntime:
    name = "onnx"

    def __init__(self, threads):
        import onnxruntime as ort

        self.ort = ort
        _shared_arena(ort)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initializers and the like: noise here
        options.add_session_config_entry("session.use_env_allocators", "1")
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.options = options

    def load(self, model_dir, manifest, where):
        entry = _entry(manifest, where)
        data = _read_checked(Path(model_dir) / ONNX_FILE, entry["sha256"])
        rows, known = _known_rows(model_dir, entry, where)
        try:
            session = self.ort.InferenceSession(data, self.options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime raises its own types for a graph it cannot run
            raise Unavailable(f"ONNX Runtime cannot load {ONNX_FILE} ({type(e).__name__}: {str(e)[:200]})") from None
        inputs, outputs = session.get_inputs(), session.get_outputs()
        info = ModelInfo("onnx", tuple(inputs[0].shape[1:]), tuple(outputs[0].shape[1:]), entry["parameter_bytes"],
                         rows, known)
        return OnnxModel(session, info)

    def info(self, model):
        return model.info

    def runner(self, members):
        return OnnxGroup(members)


class OnnxGroup:
    """The models of a group, each on its tail of the group's one input, one call each."""

    def __init__(self, members):
        self.members = {name: (model, length) for name, model, length in members}

    def run(self, names, inputs):
        arrays = as_list(inputs)
        return {name: self.members[name][0](tail(arrays, self.members[name][1])) for name in names}
