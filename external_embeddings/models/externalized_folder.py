"""An externalized model's folder: its tokenizer spec, ``rows.npy`` and ``kept_rows.npz``, read and checked.

``rows.npy`` maps each id of the original Embedding to a store id (0 is a zero vector, k the
store's row k - 1), so the vectors the model sees are the store's, gathered at predict time;
``kept_rows.npz`` holds the rows whose original vectors were kept and replace the gathered ones.
Nothing here imports TensorFlow: the server's parent checks these folders before its workers start.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, MemoryBudgetError
from ..text import specs

FIX = "externalize the model again"


def is_externalized(manifest):
    """True for a manifest whose tokenizer is a spec (a dict with a "kind"), as ``externalize`` writes."""
    return isinstance(manifest, dict) and isinstance(manifest.get("tokenizer"), dict) and "kind" in manifest["tokenizer"]


def check_fields(manifest, where):
    """Refuse an externalized manifest whose tokenizer kind, files or mask flag this version cannot use."""
    spec = manifest["tokenizer"]
    if manifest.get("kind") != "external":
        raise InputError(where, f"is a {manifest.get('kind')} model with a tokenizer spec", FIX)
    if spec["kind"] not in specs.KINDS:
        raise InputError(where, f"has a tokenizer of kind {spec['kind']!r}, which this version does not know",
                         "use one of " + ", ".join(specs.KINDS) + ", or a newer version")
    _file_name(manifest, "rows", ".npy", where)
    if manifest.get("kept_rows") is not None:
        _file_name(manifest, "kept_rows", ".npz", where)
    if type(manifest.get("mask")) is not bool:
        raise InputError(where, f"has mask={manifest.get('mask')!r}, not true or false", FIX)


def _file_name(manifest, field, suffix, where):
    name = manifest.get(field)
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(suffix) or name.startswith("."):
        raise InputError(where, f"names no {field} file (got {name!r})", f"give a {suffix} file in the model's folder")
    return name


@dataclass(eq=False)
class Externalized:
    """What the Predictor needs beside an externalized model: its tokenizer and its ids' vectors."""

    tokenizer: object
    rows: np.ndarray  # model id -> store id
    kept_ids: np.ndarray  # model ids whose vectors are kept_vectors, not the store's (sorted)
    kept_vectors: np.ndarray
    mask: bool
    mapping_key: str  # equal for two models whose ids map to the same vectors
    with_vector: np.ndarray  # per model id: the original model's row was not all zeros

    def vectors(self, store, ids):
        """``ids.shape + (dim,)`` float32: what the model is fed for its ``ids``."""
        return mapped_vectors(store, self.rows, self.kept_ids, self.kept_vectors, ids)


def mapped_vectors(store, rows, kept_ids, kept_vectors, ids):
    """The store's vectors of ``rows[ids]``, with the kept rows' own vectors for ``kept_ids`` (sorted)."""
    vectors = store.gather(rows[ids])
    if len(kept_ids):
        at = np.minimum(np.searchsorted(kept_ids, ids), len(kept_ids) - 1)
        kept = kept_ids[at] == ids
        vectors[kept] = kept_vectors[at[kept]]
    return vectors


def read_externalized(model_dir, manifest, where):
    """The checked ``Externalized`` of a folder whose manifest passed ``check_fields`` (and the store check)."""
    tokenizer = specs.load_tokenizer(model_dir, manifest["tokenizer"], where)
    if tokenizer.length != manifest.get("sequence_length"):
        raise InputError(where, f"has sequence_length {manifest.get('sequence_length')!r} but its tokenizer gives "
                         f"{tokenizer.length} ids", FIX)
    count, dim = manifest["store"].get("count"), manifest["store"].get("dim")
    if type(count) is not int or type(dim) is not int:
        raise InputError(where, "names no store count and dim", FIX)
    path = Path(model_dir) / manifest["rows"]
    rows = _load(path, np.load)
    if not isinstance(rows, np.ndarray) or rows.ndim != 1 or rows.dtype.kind not in "iu":
        raise InputError(path, "is not a 1-D integer array (model id -> store id)", FIX)
    if len(rows) < tokenizer.vocabulary_size:
        raise InputError(path, f"maps {len(rows):,} ids but the tokenizer gives ids up to {tokenizer.vocabulary_size - 1:,}", FIX)
    if len(rows) and (rows.min() < 0 or rows.max() > count):
        raise InputError(path, f"holds store ids outside 0..{count:,} (got {rows.min()}..{rows.max()}): "
                         "it was made for another store", "externalize the model again with this store")
    kept_ids, kept_vectors = np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32)
    if manifest.get("kept_rows") is not None:
        path = Path(model_dir) / manifest["kept_rows"]
        kept_ids, kept_vectors = _load(path, _read_kept)
        if kept_ids.ndim != 1 or kept_ids.dtype.kind not in "iu" or kept_vectors.shape != (len(kept_ids), dim) \
                or kept_vectors.dtype.kind != "f":
            raise InputError(path, f"does not hold ids (k,) ints and vectors (k, {dim}) floats", FIX)
        kept_ids = kept_ids.astype(np.int64)
        if len(kept_ids) and (kept_ids.min() < 0 or kept_ids.max() >= len(rows) or len(np.unique(kept_ids)) < len(kept_ids)):
            raise InputError(path, f"holds ids that are repeated or outside 0..{len(rows) - 1:,}", FIX)
        order = np.argsort(kept_ids)
        kept_ids, kept_vectors = kept_ids[order], kept_vectors[order].astype(np.float32)
    digest = hashlib.sha256(rows.astype(np.int64).tobytes())
    digest.update(kept_ids.tobytes())
    digest.update(kept_vectors.tobytes())
    # ``externalize`` maps a row to the store only when it is not all zeros and equals the store's
    # vector, so a nonzero store id is a row that held a vector; a kept row holds its own.
    with_vector = rows != 0
    with_vector[kept_ids] = np.any(kept_vectors != 0, axis=1)
    # int32 where the store's ids fit: half the memory, per model and per worker.
    rows = rows.astype(np.int32 if count < 2**31 else np.int64)
    return Externalized(tokenizer, rows, kept_ids, kept_vectors, manifest["mask"], digest.hexdigest(), with_vector)


def _read_kept(path):
    with np.load(path, allow_pickle=False) as npz:
        if "ids" not in npz or "vectors" not in npz:
            raise ValueError("it lacks 'ids' or 'vectors'")
        return npz["ids"], npz["vectors"]


def _load(path, read):
    try:
        return read(path) if read is not np.load else np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(path, "is missing", "copy the whole model folder") from None
    except (ValueError, OSError, EOFError) as e:
        raise InputError(path, f"cannot be read ({str(e)[:120]})", FIX) from None


def check_budget(store, shape):
    """Refuse to build a float32 array of ``shape + (dim,)`` beyond the store's budget, as ``gather`` does."""
    needed = int(np.prod(shape)) * store.dim * 4
    if needed > store.max_bytes:
        raise MemoryBudgetError(store.path, f"refusing to build a {tuple(shape) + (store.dim,)} float32 array of "
                                f"{needed:,} bytes (the limit is {store.max_bytes:,})",
                                "send fewer texts at a time or raise MAX_MATERIALIZE_BYTES")
