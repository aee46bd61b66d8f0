"""The shared embedding store: a directory that every model and process maps, never parses.

Layout of a store directory::

    vectors.npy        (count, dim) float32, float16 or int8, row i = word i of the source file
    scales.npy         int8 stores only: (count,) float32, row i's vector = codes * scales[i]
    vocab.txt          the words in file order, UTF-8, one per line
    vocab_offsets.npy  (count + 1,) int64 byte offsets of each word in vocab.txt
    index_hashes.npy   (count,) uint64 word hashes, sorted
    index_rows.npy     (count,) int64 the row of each sorted hash
    index_buckets.npy  (2**bits + 1,) int64 where the hashes starting with each ``bits``-bit
                       prefix start in index_hashes.npy, then count (stores written before it
                       existed are searched without it)
    store.json         dim, count, dtype, source, fingerprint

Opening maps these files (like ``np.load(mmap_mode="r")``) and reads only store.json, so it takes
the same time for 400,000 words as for 40; the OS shares the mapped pages between processes.
Checking the contents reads every byte, so it is done once per file identity (verified.py).
A Python dict of the vocabulary would take ~140 ms to build for GloVe 6B and a copy per
process, so the word index is a sorted hash array: a word's hash prefix names its bucket of
8-16 hashes (index_buckets.npy), searched in 1-2 pages, and each hit is confirmed against the
word's bytes in vocab.txt. This module never imports TensorFlow.
"""

import hashlib
import itertools
import json
import math
import mmap
import os
import re
from collections.abc import Mapping, Set
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import verified
from ..atomic import atomic_dir
from ..errors import InputError, MemoryBudgetError

MANIFEST = "store.json"
BUCKETS = "index_buckets.npy"
FORMAT = 1
# int8 stores are format 2, so that code which predates scales.npy refuses them instead of
# gathering raw codes; float stores stay format 1 and keep their fingerprints.
FORMATS = {"float32": 1, "float16": 1, "int8": 2}
_CHUNK = 65536  # rows per slice when hashing or quantizing, so a big matrix is never copied whole
DEFAULT_MAX_BYTES = 2 * 1024**3


_BLAKE2B_64 = hashlib.blake2b(digest_size=8)


def word_hashes(encoded_words):
    """64-bit BLAKE2b of each UTF-8 word: stable across processes and Python versions."""
    digests = []
    for word in encoded_words:  # copying a hasher costs a third less than making one with options
        h = _BLAKE2B_64.copy()
        h.update(word)
        digests.append(h.digest())
    return np.frombuffer(b"".join(digests), dtype="<u8")


def _mapped_file(array):
    """The file ``array`` is mapped from when it is all of that file's data (``np.load(mmap_mode=...)``), else None."""
    filename = getattr(array, "filename", None)
    if filename is None or not array.flags.c_contiguous:
        return None
    try:
        return filename if array.offset + array.nbytes == os.path.getsize(filename) else None
    except OSError:
        return None


def _matrix_bytes(vectors, filename=None):
    """The matrix's bytes, a slice at a time; read from ``filename`` (``_mapped_file(vectors)``) when given.

    Hashing a mapped matrix through the mapping would count every page of it in this process's
    RSS (1.2 GB at 1M x 300), though the pages are the same page cache either way. Only
    ``write_store`` reads the file, whose rows file is its own; ``verify`` hashes the mapping
    that the store serves, so that a file replaced meanwhile cannot pass for it.
    """
    if filename is None:
        for start in range(0, len(vectors), _CHUNK):  # in slices, so a mapped matrix is not copied whole
            yield np.ascontiguousarray(vectors[start:start + _CHUNK]).data
        return
    buffer = bytearray(16 << 20)
    with open(filename, "rb") as f, memoryview(buffer) as view:
        f.seek(vectors.offset)
        left = vectors.nbytes
        while left:
            got = f.readinto(view[:min(left, len(buffer))])
            if not got:  # the file was cut meanwhile: the fingerprint will not match
                return
            yield view[:got]
            left -= got


def _fingerprint(vocab_bytes, vectors, scales=None, filename=None):
    """SHA-256 of the words, the matrix and (int8) the scales: what a model was trained with."""
    form = FORMAT if scales is None else FORMATS["int8"]
    digest = hashlib.sha256(f"{form} {vectors.shape} {vectors.dtype.str}\n".encode())
    digest.update(vocab_bytes)
    for chunk in _matrix_bytes(vectors, filename):
        digest.update(chunk)
    if scales is not None:
        digest.update(np.ascontiguousarray(scales, dtype="<f4").data)
    return digest.hexdigest()


def quantize_int8(matrix):
    """Per-row symmetric int8: ``codes * scale`` is within ``scale / 2`` of each value.

    ``scale = max|row| / 127``, so every row uses the full code range however its norm compares
    with the others'; a zero row gets scale 0 and stays exactly zero.
    """
    codes = np.empty(np.shape(matrix), dtype=np.int8)
    scales = np.empty(len(matrix), dtype=np.float32)
    for start in range(0, len(matrix), _CHUNK):
        rows = np.asarray(matrix[start:start + _CHUNK], dtype=np.float32)
        scale = np.abs(rows).max(axis=1, initial=0) / np.float32(127)
        safe = np.where(scale > 0, scale, np.float32(1))
        codes[start:start + _CHUNK] = np.clip(np.rint(rows / safe[:, None]), -127, 127)
        scales[start:start + _CHUNK] = scale
    return codes, scales


def _size(n):
    """A byte count for people: 640 bytes, 12.50 MiB, 3.20 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,} bytes"


def write_store(words, matrix, target, source, dtype="float32", rows_file=None, encoded=None, hashes=None):
    """Write a store for ``words``/``matrix`` into ``target``, atomically; returns the manifest.

    Everything is written into a temporary directory beside ``target`` and renamed at the end,
    so an interrupted conversion never leaves a directory that looks like a store. When
    ``matrix`` is the float32 ``.npy`` file ``rows_file`` mapped (what ``convert`` streams the
    rows into) and the store is float32, that file is moved in as ``vectors.npy`` instead of
    being written a second time. ``encoded`` and ``hashes``, when given, are the words as UTF-8
    and their ``word_hashes`` (``read_vectors(index=True)`` makes them while it parses).
    """
    target = Path(target)
    if dtype not in FORMATS:
        raise InputError(target, f"unknown dtype {dtype!r}", "use float32, float16 or int8")
    if np.ndim(matrix) != 2 or len(matrix) != len(words) or not np.shape(matrix)[1]:
        raise InputError(source.get("file", target), f"holds {len(words):,} words but a {np.shape(matrix)} matrix",
                         "give one vector of at least one value per word")
    if dtype == "float16" and np.abs(matrix).max(initial=0) > np.finfo(np.float16).max:
        raise InputError(source.get("file", target), "values too large for float16", "use --dtype float32")
    scales = None
    if dtype == "int8":
        vectors, scales = quantize_int8(matrix)
    else:
        vectors = np.ascontiguousarray(matrix, dtype=dtype)
    mapped = _mapped_file(matrix) if getattr(matrix, "dtype", None) == np.dtype(dtype) else None
    move = rows_file is not None and mapped is not None and os.path.samefile(mapped, rows_file)
    encoded = [w.encode("utf-8") for w in words] if encoded is None else encoded
    if len(encoded) != len(words):
        raise ValueError(f"{len(encoded)} encoded words for {len(words)} words")
    vocab_bytes = b"".join(w + b"\n" for w in encoded)
    # The matrix's SHA-256 (a second at 1.2 GB; hashlib releases the GIL) runs on a thread
    # while this one indexes the words.
    with ThreadPoolExecutor(1) as pool:
        fingerprint = pool.submit(_fingerprint, vocab_bytes, matrix if mapped else vectors, scales, mapped)
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(w) + 1 for w in encoded], out=offsets[1:])
        hashes = word_hashes(encoded) if hashes is None else np.asarray(hashes, dtype="<u8")
        if len(hashes) != len(encoded):
            raise ValueError(f"{len(hashes)} word hashes for {len(encoded)} words")
        order = np.argsort(hashes, kind="stable")
        fingerprint = fingerprint.result()
    manifest = {
        "format": FORMATS[dtype], "dim": int(vectors.shape[1]), "count": int(vectors.shape[0]), "dtype": dtype,
        "source": source, "fingerprint": fingerprint,
    }
    # Another process may have made ``target`` while this one converted: when it holds the same
    # vectors (its fingerprint says so) it is used; otherwise the error says what happened.
    if (theirs := _same_store(target, manifest)) is not None:
        return theirs
    check_target(target)
    try:
        with atomic_dir(target) as tmp:
            if move:
                os.replace(rows_file, tmp / "vectors.npy")  # same folder as the target, so same file system
            else:
                np.save(tmp / "vectors.npy", vectors)
            if scales is not None:
                np.save(tmp / "scales.npy", scales)
            (tmp / "vocab.txt").write_bytes(vocab_bytes)
            np.save(tmp / "vocab_offsets.npy", offsets)
            sorted_hashes = hashes[order]
            np.save(tmp / "index_hashes.npy", sorted_hashes)
            np.save(tmp / "index_rows.npy", order.astype(np.int64))
            np.save(tmp / BUCKETS, bucket_starts(sorted_hashes, bucket_bits(len(hashes))))
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    except OSError as e:
        if (theirs := _same_store(target, manifest)) is not None:
            return theirs
        if target.exists():
            raise InputError(target, "was written by another process at the same time, with other vectors",
                             "use it, or remove it and convert again") from None
        raise InputError(target, f"cannot be written ({e.strerror or e})", "check the folder's permissions") from None
    return manifest


def _same_store(target, manifest):
    """The manifest of the store at ``target`` when it holds the vectors ``manifest`` describes, else None."""
    try:
        theirs = json.loads((Path(target) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return theirs if isinstance(theirs, dict) and theirs.get("fingerprint") == manifest["fingerprint"] else None


def check_target(target):
    """Refuse a store directory that exists (a file, or a folder with files) or cannot be made."""
    target = Path(target)
    if target.exists():
        if not target.is_dir():
            raise InputError(target, "is a file, not a folder", "give a new folder for the store")
        if any(target.iterdir()):
            raise InputError(target, "already exists and is not empty", "remove it or choose another store directory")
    parent = next(p for p in target.parents if p.exists())
    if not parent.is_dir():
        raise InputError(target, f"cannot be created: {parent} is a file", "give a folder path for the store")


def _rerun(path):
    return f"re-create it: remove {path} and run python -m external_embeddings convert VECTORS_FILE {path}"


def bucket_bits(count):
    """Prefix bits of the hash buckets for ``count`` words: 8 to 16 words a bucket on average."""
    return min(20, max(1, count.bit_length() - 4))


def bucket_starts(sorted_hashes, bits):
    """index_buckets.npy: where the hashes with each ``bits``-bit prefix start, then their count."""
    prefixes = np.arange(2**bits, dtype=np.uint64) << np.uint64(64 - bits)
    return np.append(np.searchsorted(sorted_hashes, prefixes), len(sorted_hashes)).astype(np.int64)


def _check_index(path, vocab_bytes, offsets, hashes, rows, buckets=None):
    """Raise unless the word index files agree with vocab.txt.

    The fingerprint covers only vocab.txt and the vectors; a damaged index would make lookups
    silently miss or return the wrong word, so ``verify`` rebuilds it and compares.
    """
    ends = np.flatnonzero(np.frombuffer(vocab_bytes, dtype=np.uint8) == ord("\n")) + 1
    if offsets[0] != 0 or not np.array_equal(offsets[1:], ends):
        raise InputError(path / "vocab_offsets.npy", "does not match vocab.txt (changed or corrupt)", _rerun(path))
    count = len(rows)
    if not np.array_equal(np.sort(rows), np.arange(count)) or np.any(hashes[1:] < hashes[:-1]) \
            or not np.array_equal(word_hashes(vocab_bytes.split(b"\n")[:-1])[rows], hashes):
        raise InputError(path / "index_hashes.npy", "and index_rows.npy do not match vocab.txt (changed or corrupt)",
                         _rerun(path))
    if buckets is not None and not np.array_equal(buckets, bucket_starts(hashes, (len(buckets) - 1).bit_length() - 1)):
        raise InputError(path / BUCKETS, "does not match index_hashes.npy (changed or corrupt)", _rerun(path))


# The header np.save writes (format 1.0), e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 300), }
_NPY_HEADER = re.compile(rb"\{'descr': '([<>|=]?[a-zA-Z]\d*)', 'fortran_order': (False|True), 'shape': \(([\d, ]*)\), \} *\n")


def _npy_header(head):
    """(shape, dtype, Fortran order, data offset) from a file's first bytes when np.save wrote it, else None."""
    if head[:8] != b"\x93NUMPY\x01\x00" or len(head) < 10:
        return None
    offset = 10 + int.from_bytes(head[8:10], "little")
    match = _NPY_HEADER.fullmatch(head[10:offset])
    if match is None:
        return None
    descr, fortran_order, shape = match.groups()
    return tuple(int(n) for n in shape.split(b",") if n.strip()), np.dtype(descr.decode()), fortran_order == b"True", offset


def _map_npy(path):
    """The array in the .npy file ``path``, read-only and mapped, not read.

    What ``np.load(mmap_mode="r")`` does, in a fifth of the time: it opens each file three times,
    resolves its path and parses the header as Python, 0.1 ms a file; this maps the file once,
    reads np.save's header with a regular expression (numpy's reader takes any other) and returns
    a plain ndarray over the mapping (an np.memmap also pays a check on every slice of it).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        head = os.pread(fd, 4096, 0)  # read, not through the mapping: opening maps no page of data
        mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)  # ValueError for an empty file
    finally:
        os.close(fd)
    try:
        header = _npy_header(head)
        if header is None:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"unsupported .npy format version {version}")
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran_order, dtype = read(f)
                header = shape, dtype, fortran_order, f.tell()
    except OSError:
        raise
    except Exception as e:
        # numpy parses the header as a Python literal, so damaged bytes raise whatever Python's
        # tokenizer or np.dtype raises (TokenError, SyntaxError, TypeError, ...): all mean "damaged".
        raise ValueError(f"its .npy header cannot be read ({type(e).__name__}: {e})") from None
    shape, dtype, fortran_order, offset = header
    if dtype.hasobject:
        raise ValueError("holds Python objects")
    if len(mapping) < (needed := offset + math.prod(shape) * dtype.itemsize):
        raise ValueError(f"{len(mapping):,} bytes where its header needs {needed:,}")
    return np.ndarray(shape, dtype, buffer=mapping, offset=offset, order="F" if fortran_order else "C")


def _map_buckets(path):
    """index_buckets.npy mapped (a (2**bits + 1,) int64 array), or None for a store without one."""
    try:
        buckets = _map_npy(path / BUCKETS)
    except FileNotFoundError:
        return None  # written before the file existed: still searched, with np.searchsorted
    except (ValueError, OSError) as e:
        raise InputError(path / BUCKETS, f"is truncated or corrupt ({e})", _rerun(path)) from None
    size = len(buckets) - 1 if buckets.ndim == 1 else 0
    if buckets.dtype != np.int64 or size < 2 or size & (size - 1) or size > 2**32:
        raise InputError(path / BUCKETS, f"holds {buckets.shape} {buckets.dtype}, expected (2**bits + 1,) int64",
                         _rerun(path))
    return buckets


class EmbeddingStore:
    """A memory-mapped matrix of word vectors with a word index; open with ``EmbeddingStore.open``.

    Ids are store rows + 1: id 0 means padding or an unknown word and gathers a zero vector,
    exactly as row 0 of the baseline's Embedding does.
    """

    def __init__(self, path, manifest, arrays, vocab, max_bytes, buckets=None):
        self.path, self.manifest, self.max_bytes = Path(path), manifest, max_bytes
        self.vectors, self._offsets, self._hashes, self._rows = arrays[:4]
        self.scales = arrays[4] if len(arrays) > 4 else None  # int8 stores: row i = codes * scales[i]
        self._buckets = buckets  # None: a store written before index_buckets.npy
        if buckets is not None:
            self._shift = np.uint64(65 - (len(buckets) - 1).bit_length())  # hash >> shift: its bucket
        self._vocab = vocab
        self._vocab_bytes = np.frombuffer(vocab, dtype=np.uint8)  # the same mapping, for numpy

    dim = property(lambda self: self.manifest["dim"])
    count = property(lambda self: self.manifest["count"])
    fingerprint = property(lambda self: self.manifest["fingerprint"])

    @classmethod
    def open(cls, path, verify=False, max_bytes=DEFAULT_MAX_BYTES, verified_dir=None):
        """Map a store and check its shapes (constant time); ``verify`` also checks its contents.

        ``verify=True`` recomputes the fingerprint and the word index once per file identity and
        trusts that check while no file changed (``verified_dir`` holds the records, see
        verified.py); ``verify="full"`` always reads every byte.
        """
        if verify not in (False, True, "full"):
            raise ValueError(f"verify must be False, True or 'full', not {verify!r}")
        path = Path(path).expanduser()
        if not path.exists():
            raise InputError(path, "does not exist",
                             f"check the path, or create the store: python -m external_embeddings convert VECTORS_FILE {path}")
        if path.is_file():  # most likely the vectors file itself: "remove it" would be the wrong advice
            raise InputError(path, "is a file, not an embedding store folder",
                             f"convert it first: python -m external_embeddings convert {path} STORE_DIR")
        if not (path / MANIFEST).is_file():
            raise InputError(path, "is not an embedding store (no store.json)", _rerun(path))
        files = verified.identities(path) if verify else None  # before reading anything: a change during open shows
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            count, dim, dtype = manifest["count"], manifest["dim"], manifest["dtype"]
            # Checked here because a count of "34" or -1 would only fail deep inside numpy later.
            if not all(type(n) is int and n >= 0 for n in (count, dim)) or not isinstance(manifest["fingerprint"], str):
                raise ValueError("count and dim must be whole numbers, fingerprint a string")
            if dtype not in FORMATS:
                raise ValueError(f"unknown dtype {dtype!r}")
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(path / MANIFEST, f"is corrupt ({e})", _rerun(path)) from None
        if manifest.get("format") != FORMATS[dtype]:
            raise InputError(path / MANIFEST, f"has format {manifest.get('format')}, expected {FORMATS[dtype]} "
                             f"for a {dtype} store", _rerun(path))
        expected = {"vectors.npy": ((count, dim), np.dtype(dtype)), "vocab_offsets.npy": ((count + 1,), np.int64),
                    "index_hashes.npy": ((count,), np.dtype("<u8")), "index_rows.npy": ((count,), np.int64)}
        if dtype == "int8":
            expected["scales.npy"] = ((count,), np.dtype("<f4"))
        arrays = []
        for name in expected:
            try:
                array = _map_npy(path / name)
            except FileNotFoundError:
                raise InputError(path / name, "is missing", _rerun(path)) from None
            except (ValueError, OSError, EOFError) as e:
                raise InputError(path / name, f"is truncated or corrupt ({e})", _rerun(path)) from None
            shape, kind = expected[name]
            if array.shape != shape or array.dtype != kind:
                raise InputError(path / name, f"holds {array.shape} {array.dtype}, store.json says {shape} {kind}",
                                 _rerun(path))
            arrays.append(array)
        try:
            with open(path / "vocab.txt", "rb") as f:
                vocab = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (FileNotFoundError, ValueError, OSError) as e:
            raise InputError(path / "vocab.txt", f"is missing or empty ({e})", _rerun(path)) from None
        if len(vocab) != arrays[1][-1]:
            raise InputError(path / "vocab.txt", f"holds {len(vocab):,} bytes, expected {arrays[1][-1]:,}", _rerun(path))
        store = cls(path, manifest, arrays, vocab, max_bytes, _map_buckets(path))
        if verify:
            unchanged = verified.identities(path) == files
            if verify is True and unchanged and verified.was_verified(verified_dir, path, store.fingerprint, files):
                return store._random_access()
            vocab_bytes = vocab[:]
            if _fingerprint(vocab_bytes, store.vectors, store.scales) != store.fingerprint:  # reads every byte
                raise InputError(path, "files do not match the fingerprint in store.json (changed or corrupt)",
                                 _rerun(path))
            _check_index(path, vocab_bytes, *arrays[1:4], store._buckets)
            if unchanged and verified.identities(path) == files:
                verified.remember(verified_dir, path, store.fingerprint, files)
        return store._random_access()

    def _random_access(self):
        """Tell the kernel that rows are read at random (``MADV_RANDOM``), after any hashing.

        Without it, a row missing from the page cache reads ahead its neighbours, and recent
        kernels cache (and map) them as one large folio: a few lookups would make megabytes resident.
        """
        for array in (self.vectors, self.scales):
            raw = getattr(array, "base", None)  # the mapping (_map_npy)
            if isinstance(raw, mmap.mmap) and hasattr(mmap, "MADV_RANDOM"):
                try:
                    raw.madvise(mmap.MADV_RANDOM)
                except OSError:
                    pass  # only advice
        return self

    def word(self, row):
        """The word of store row ``row`` (0-based)."""
        return self._vocab[self._offsets[row]:self._offsets[row + 1] - 1].decode("utf-8")

    def _search(self, hashes):
        """Where each hash is, or would go, in the sorted index_hashes (np.searchsorted's answer)."""
        if self._buckets is None:
            # Searched in increasing hash order, each binary search starts where the last one
            # ended and walks pages already in the CPU caches: half the time of word order.
            order = np.argsort(hashes)
            positions = np.empty(len(hashes), dtype=np.intp)
            positions[order] = np.searchsorted(self._hashes, hashes[order])
            return positions
        # A binary search inside each hash's bucket, all at once: ~4 steps in 1-2 pages, where
        # one over the whole index takes ~20 steps through as many pages. Clipped, so that a
        # damaged index_buckets.npy can only make words missing (every hit is confirmed).
        bucket = (hashes >> self._shift).astype(np.intp)
        lo, hi = self._buckets[bucket], self._buckets[bucket + 1]
        for _ in range(int((hi - lo).max(initial=0)).bit_length()):
            mid = (lo + hi) >> 1
            less = (self._hashes[np.clip(mid, 0, self.count - 1)] < hashes) & (mid < hi)
            lo, hi = np.where(less, mid + 1, lo), np.where(less, hi, mid)
        return lo

    def _find(self, words):
        """The id of each of ``words`` (a list of str): its store row + 1, or 0; an int64 array."""
        text = "\n".join(words)
        if text.count("\n") == len(words) - 1:  # no word holds a newline: encode them all at once
            data = text.encode("utf-8")
            encoded = data.split(b"\n")
        else:
            encoded = [w.encode("utf-8") for w in words]
            data = b"\n".join(encoded)
        hashes = word_hashes(encoded)
        positions = np.clip(self._search(hashes), 0, self.count - 1)
        # Every word's first candidate is confirmed at once: the word and the newline after it,
        # compared byte for byte with the candidate's line in vocab.txt (no Python work per word).
        rows = self._rows[positions]
        starts, ends = self._offsets[rows], self._offsets[rows + 1]
        lines = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)) + 1
        equal_hash = self._hashes[positions] == hashes
        same = equal_hash & (ends - starts == lines)
        needles = np.frombuffer(data + b"\n", dtype=np.uint8)
        begins = np.cumsum(lines) - lines
        at = np.repeat(starts - begins, lines) + np.arange(len(needles))
        np.minimum(at, len(self._vocab_bytes) - 1, out=at)  # a candidate of another length may end the file
        same &= np.add.reduceat(self._vocab_bytes[at] != needles, begins) == 0
        ids = np.where(same, rows + 1, 0)
        # A word whose first candidate is another word with the same hash: walk the rest of the
        # equal-hash run. Rare: a 64-bit hash collides about once in 10^7 stores of 2M words.
        for i in np.flatnonzero(equal_hash & ~same).tolist():
            pos, h, raw = int(positions[i]) + 1, int(hashes[i]), encoded[i]
            while pos < self.count and int(self._hashes[pos]) == h:
                row = int(self._rows[pos])
                if self._vocab[self._offsets[row]:self._offsets[row + 1] - 1] == raw:
                    ids[i] = row + 1
                    break
                pos += 1
        return ids

    def lookup(self, words):
        """Return ``{word: id}`` for the given words that the store holds (ids are rows + 1)."""
        words = list(dict.fromkeys(words))
        if not words:
            return {}
        ids = self._find(words)
        known = ids > 0
        return dict(zip(itertools.compress(words, known.tolist()), ids[known].tolist()))

    def ids(self, tokens):
        """Map tokens to ids: store row + 1, or 0 for a word the store does not hold."""
        index = {}
        inverse = [index.setdefault(t, len(index)) for t in tokens]  # each distinct token is looked up once
        if not index:
            return np.zeros(0, dtype=np.int64)
        return self._find(list(index))[inverse]

    def word_index(self, words, vocabulary=None):
        """``{word: id}`` for the ``words`` that a model with ``vocabulary`` keeps.

        With no vocabulary the model knows every word of the store, and the others are dropped.
        With one (a collection of words) it keeps exactly those, as the baseline's word index
        does: a vocabulary word the store lacks keeps its place as id 0, a zero vector.
        """
        found = self.lookup(words)
        if vocabulary is None:
            return found
        if not isinstance(vocabulary, (Set, Mapping)):  # a list would make each test below a scan: quadratic
            vocabulary = set(vocabulary)
        return {word: found.get(word, 0) for word in dict.fromkeys(words) if word in vocabulary}

    def gather(self, ids):
        """Vectors for an id array of any shape: ``ids.shape + (dim,)`` float32, zeros for id 0."""
        ids = np.asarray(ids)
        needed = ids.size * self.dim * 4
        if needed > self.max_bytes:
            raise MemoryBudgetError(
                self.path, f"refusing to build a {ids.shape + (self.dim,)} float32 array of {_size(needed)} "
                f"(the limit is {_size(self.max_bytes)})",
                "gather batch by batch (external_embeddings.batches.Batches) or raise MAX_MATERIALIZE_BYTES")
        # A too large id would be an IndexError deep in numpy, a negative one would silently gather row 0.
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() > self.count):
            raise InputError(self.path, f"cannot gather ids outside 0..{self.count} (got {ids.dtype} "
                             f"{ids.min()}..{ids.max()})", "map words to ids with store.ids or store.lookup")
        flat = ids.ravel().astype(np.int64, copy=False)  # uint32 0 - 1 would wrap to 4294967295
        rows = np.maximum(flat - 1, 0)
        # np.take copies whole rows; fancy indexing (vectors[rows]) takes ~4x as long here.
        out = np.take(np.asarray(self.vectors), rows, axis=0).astype(np.float32, copy=False)
        if self.scales is not None:
            out *= np.take(np.asarray(self.scales), rows)[:, None]
        out[flat == 0] = 0.0
        return out.reshape(ids.shape + (self.dim,))

    def batch(self, token_lists, seq_len, vocabulary=None):
        """``(len(token_lists), seq_len, dim)`` float32, pre-padded and pre-truncated like the scripts.

        Words outside ``vocabulary`` (by default: outside the store) are dropped; see ``word_index``.
        """
        from ..text.tokenizer import pad, to_ids

        if int(seq_len) < 1:
            raise InputError(self.path, f"cannot pad to a sequence length of {seq_len}", "give a length >= 1")
        token_lists = [list(tokens) for tokens in token_lists]
        found = self.word_index([t for tokens in token_lists for t in tokens], vocabulary)
        return self.gather(pad([to_ids(tokens, found) for tokens in token_lists], seq_len))

    def verify(self, verified_dir=None):
        """Recompute the fingerprint and the index; raise if the files no longer match store.json."""
        EmbeddingStore.open(self.path, verify="full", verified_dir=verified_dir)

    def describe(self):
        """What a model manifest records about the store it was trained with."""
        return {"fingerprint": self.fingerprint, "dim": self.dim, "count": self.count,
                "dtype": self.manifest["dtype"], "path": str(self.path)}


def convert_store(source, target, dtype):
    """Re-write the store at ``source`` in another dtype (float32, float16, int8) into ``target``.

    The source is verified first, so a damaged store is never copied; its words keep their rows,
    and the new manifest records where it came from. Returns the new manifest.
    """
    src = EmbeddingStore.open(source, verify="full")
    words = src._vocab[:].decode("utf-8").split("\n")[:-1]
    matrix = src.vectors
    if src.scales is not None:  # int8 -> another dtype: the values the codes stand for
        matrix = np.empty(src.vectors.shape, dtype=np.float32)
        for start in range(0, src.count, _CHUNK):
            matrix[start:start + _CHUNK] = src.gather(np.arange(start + 1, min(start + _CHUNK, src.count) + 1))
    info = {**src.manifest["source"], "converted_from": {"store": str(src.path.resolve()),
                                                        "fingerprint": src.fingerprint, "dtype": src.manifest["dtype"]}}
    return write_store(words, matrix, target, info, dtype=dtype)
