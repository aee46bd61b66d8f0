"""ONNX Runtime: each model's ``model.onnx`` as a session, with no TensorFlow in the process.

One session per model, with their threads' spinning off: spinning threads of K idle sessions
took the CPU from the one that ran when another process shared the machine (0.27x). A group's
models run one after the other on the group's one input, each call costing ~0.1 ms besides its
work.

Memory: by default no session keeps an arena (by default ONNX Runtime gives each session its
own, ~90 MB with these CNNs after a batch of 64 texts). Buffers come from malloc instead, and
glibc is told to map every block of 1 MB or more on its own (``mallopt(M_MMAP_THRESHOLD)``), so
a big batch's buffers go back to the system when it ends, rather than staying in glibc's heap
(~360 MB a worker otherwise). That costs speed: a batch's buffers are faulted in again each
time (16-29% slower per batch, bench/bench_fuse.py). ``KEE_ONNX_ARENA=1`` trades the other way: one arena shared
by every session of the process, which keeps the largest batch's buffers (~200 MB a worker
after batches of 64 texts) and reuses them. Figures in docs/runtime.md.

One fused graph of a group's models was measured as well (bench/bench_fuse.py): no faster, and
ONNX Runtime computes every output of a graph whatever is asked, so a request for one model
would pay for all of them.
"""

import ctypes
import ctypes.util
import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..models.onnx_export import KNOWN_ROWS_FILE, ONNX_FILE
from .common import ModelInfo, Unavailable, as_list, tail

DTYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
          "tensor(double)": np.float64, "tensor(float16)": np.float16, "tensor(bool)": np.bool_}
FIX = "export it again: python -m external_embeddings export MODELS"
M_MMAP_THRESHOLD, MMAP_BYTES = -3, 1 << 20
_arena = threading.Lock()
_arena_made = False


def _shared_arena(ort):
    """Register the process's one CPU arena, which every session then uses (once per process)."""
    global _arena_made
    with _arena:
        if not _arena_made:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, None)
            _arena_made = True


def _big_blocks_mapped():
    """Make glibc map each block of ``MMAP_BYTES`` or more on its own, so that it is unmapped when
    freed. Fixing the threshold also stops glibc raising it (up to 32 MB) after the first big
    frees, which would leave a batch's buffers in its heap. Other C libraries: nothing to do."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)
    except (OSError, AttributeError):
        pass


class OnnxModel:
    """One model's session; ``model(inputs)`` gives its probabilities as numpy, as Keras' model does."""

    def __init__(self, session, info):
        self.session, self.info = session, info
        self.inputs = [(i.name, DTYPES.get(i.type, np.float32)) for i in session.get_inputs()]

    def __call__(self, inputs):
        if isinstance(inputs, dict):  # named inputs (an externalized model's vectors and mask)
            feed = {name: np.ascontiguousarray(inputs[name.split(":")[0]], dtype) for name, dtype in self.inputs}
            return self.session.run(None, feed)[0]
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


def _identity(path):
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def _check_file(path, digest):
    """The file's identity (inode, size, mtime) once its sha256 is found to be ``digest``.

    ONNX Runtime then reads the file itself: given the bytes instead, it kept ~1 MB more per
    model. Comparing the identity after loading makes sure that what it read is what was checked.
    """
    try:
        before = _identity(path)
        with open(path, "rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        raise InputError(path, "is missing, but its manifest names it", FIX) from None
    if actual != digest:
        raise InputError(path, "does not match the sha256 its manifest records", FIX)
    return before


def _trim():
    """Hand the heap's free pages back to the system (glibc), such as those a session's graph
    optimizations used while loading. Other C libraries: nothing to do."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _known_rows(model_dir, entry, where):
    """A baseline's (rows, which rows hold a vector), checked against the manifest."""
    embedding = entry.get("embedding")
    if embedding is None:
        return None, None
    if (not isinstance(embedding, dict) or embedding.get("known_rows") != KNOWN_ROWS_FILE
            or type(embedding.get("rows")) is not int or not isinstance(embedding.get("sha256"), str)):
        raise InputError(where, "has no valid \"onnx\" embedding entry", FIX)
    path = Path(model_dir) / KNOWN_ROWS_FILE
    before = _check_file(path, embedding["sha256"])
    known = np.load(path, allow_pickle=False)
    if _identity(path) != before:
        raise InputError(path, "changed while it was read", "load the models again once the folder is written")
    if known.dtype != np.bool_ or known.shape != (embedding["rows"],):
        raise InputError(path, f"holds {known.dtype} of shape {known.shape}, not {embedding['rows']} booleans", FIX)
    return embedding["rows"], known


class OnnxRuntime:
    name = "onnx"

    def __init__(self, threads):
        import onnxruntime as ort

        self.ort = ort
        options = ort.SessionOptions()
        if os.environ.get("KEE_ONNX_ARENA") == "1":  # faster batches, more memory kept (see above)
            _shared_arena(ort)
            options.add_session_config_entry("session.use_env_allocators", "1")
        else:
            _big_blocks_mapped()
            options.enable_cpu_mem_arena = False
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initializers and the like: noise here
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.options = options

    def load(self, model_dir, manifest, where):
        entry = _entry(manifest, where)
        path = Path(model_dir) / ONNX_FILE
        before = _check_file(path, entry["sha256"])
        rows, known = _known_rows(model_dir, entry, where)
        try:
            session = self.ort.InferenceSession(str(path), self.options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime raises its own types for a graph it cannot run
            raise Unavailable(f"ONNX Runtime cannot load {ONNX_FILE} ({type(e).__name__}: {str(e)[:200]})") from None
        finally:
            _trim()
        if _identity(path) != before:
            raise InputError(path, "changed while it was loaded", "load the models again once the folder is written")
        inputs, outputs = session.get_inputs(), session.get_outputs()
        info = ModelInfo("onnx", tuple(tuple(i.shape[1:]) for i in inputs), tuple(outputs[0].shape[1:]),
                         entry["parameter_bytes"], rows, known, tuple(i.name.split(":")[0] for i in inputs))
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
        if isinstance(inputs, dict):  # one model's named inputs, at its own length already
            return {name: self.members[name][0](inputs) for name in names}
        arrays = as_list(inputs)
        return {name: self.members[name][0](tail(arrays, self.members[name][1])) for name in names}
