"""Which store row each row of a model's frozen Embedding is: an externalized model's rows.npy.

A row is the store's when every value is within ``TOLERANCE`` of the store's vector for the row's
word, plus the store's own rounding: an Embedding filled from the same GloVe file as a float32
store matches it exactly (both parse the same decimal text to the nearest float32), and 1e-6 only
forgives a reader that rounded the last bit differently; a float16 store is within 2**-11 of each
value, an int8 store within half its row's step. Whether such rounding keeps the predictions is
then decided by the prediction check, not here.
"""

from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-6
_CHUNK = 65536


@dataclass
class RowMatch:
    rows: np.ndarray            # (E,) int64: model id -> store id (0: a zero vector)
    kept_ids: np.ndarray        # model ids whose own row must be kept (they differ from the store)
    kept_vectors: np.ndarray    # (k, dim) float32
    from_store: int             # rows found in the store
    zero: int                   # rows all zero, which need nothing
    unused: int                 # rows the tokenizer never produces
    max_diff: float             # the largest difference among the rows found in the store
    examples: list              # up to 3 (word, max |diff| or None when the store lacks the word)

    @property
    def kept_bytes(self):
        return int(self.kept_ids.nbytes + self.kept_vectors.nbytes)


def store_tolerance(store, original):
    """Per row of ``original``: how far the store's vector may be and still be that row."""
    top = np.abs(original).max(axis=1)
    dtype = store.manifest["dtype"]
    rounding = top * 2.0**-11 if dtype == "float16" else top / 254 if dtype == "int8" else 0.0
    return TOLERANCE + rounding


def match_rows(matrix, words, store):
    """Match each row of ``matrix`` (E, dim) with the store's vector for ``words[id]``.

    ``words`` has one entry per model id: the word the tokenizer gives that id, "" for padding
    (id 0, never looked up) or None for an id the tokenizer never produces.
    """
    matrix = np.asarray(matrix, dtype=np.float32)
    count = len(matrix)
    reachable = np.array([w is not None for w in words] + [False] * (count - len(words)))
    zero = ~np.any(matrix != 0, axis=1)
    # Padding (id 0) has no word: with a non-zero row it differs from any store.
    named = [words[i] if i else "" for i in range(len(words))]
    needed = np.flatnonzero(reachable & ~zero)
    found = store.lookup([named[i] for i in needed if named[i]])
    rows = np.zeros(count, dtype=np.int64)
    differ, max_diff = [], 0.0
    for start in range(0, len(needed), _CHUNK):
        ids = needed[start:start + _CHUNK]
        store_ids = np.array([found.get(named[i], 0) for i in ids], dtype=np.int64)
        # Gathered in store order: the rows are read from the mapped file front to back, which the
        # kernel's read-ahead serves, where vocabulary order jumps around the file page by page.
        order = np.argsort(store_ids, kind="stable")
        vectors = np.empty((len(ids), matrix.shape[1]), dtype=np.float32)
        vectors[order] = store.gather(store_ids[order])
        diff = np.abs(matrix[ids] - vectors).max(axis=1)
        same = (store_ids > 0) & (diff <= store_tolerance(store, matrix[ids]))
        rows[ids[same]] = store_ids[same]
        if same.any():
            max_diff = max(max_diff, float(diff[same].max()))
        differ += [(int(i), float(d) if s else None) for i, d, s in zip(ids[~same], diff[~same], store_ids[~same])]
    kept_ids = np.array([i for i, _ in differ], dtype=np.int64)
    examples = sorted(differ, key=lambda d: -1 if d[1] is None else -d[1])[:3]
    return RowMatch(rows, kept_ids, matrix[kept_ids].reshape(len(kept_ids), matrix.shape[1]),
                    len(needed) - len(differ), int((reachable & zero).sum()), int((~reachable).sum()), max_diff,
                    [(named[i] if i else "(padding)", d) for i, d in examples])


def describe_differences(match, store_path):
    """The refusal's text: how many rows differ from the store, with examples."""
    total = match.from_store + len(match.kept_ids)
    shown = ", ".join(f"{word!r}: not in the store" if d is None else f"{word!r}: max |diff| {d:.2g}"
                      for word, d in match.examples)
    why = ("this embedding comes from other vectors than this store's: give the store of the vectors it was "
           "filled from" if len(match.kept_ids) > total / 2 else "this embedding was trained or comes from other vectors")
    return f"{len(match.kept_ids):,} of {total:,} non-zero rows differ from {store_path}, e.g. {shown}: {why}"
