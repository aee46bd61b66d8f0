"""Remember which store files were fully verified, so that later opens skip the hash.

Hashing a store reads every byte (0.3 s for GloVe 6B 50d, seconds at 840B scale) and makes every
page resident, in every process. A full verification therefore records each file's identity
(device, inode, size, mtime and ctime in nanoseconds) in a small JSON file in a user cache,
keyed by the store's absolute path and fingerprint. An open that finds the same identities
trusts the earlier check; any write, truncation, replacement or copy changes an identity (ctime
changes on every write, even when mtime is set back), so that store is verified again.
The store folder itself is never written, so a read-only store works; a cache that cannot be
written only means every open verifies fully.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

# The files a store can hold; a missing one is recorded as None (open reports it).
FILES = ("store.json", "vectors.npy", "scales.npy", "vocab.txt", "vocab_offsets.npy", "index_hashes.npy",
         "index_rows.npy", "index_buckets.npy")


def default_dir():
    """``verified/`` in the scripts' CACHE_DIR: ``$KEE_CACHE_DIR`` or ~/.cache/keras-external-embeddings."""
    return Path(os.environ.get("KEE_CACHE_DIR") or "~/.cache/keras-external-embeddings").expanduser() / "verified"


def identities(path):
    """{file: [device, inode, size, mtime_ns, ctime_ns] or None} for every file a store may hold."""
    found = {}
    for name in FILES:
        try:
            s = os.stat(Path(path) / name)
            found[name] = [s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns]
        except FileNotFoundError:
            found[name] = None
    return found


def _record(folder, path, fingerprint):
    key = hashlib.sha256(f"{Path(path).resolve()}\n{fingerprint}".encode()).hexdigest()[:32]
    return Path(folder if folder is not None else default_dir()).expanduser() / f"{key}.json"


def was_verified(folder, path, fingerprint, files):
    """True when a full verification of this store saw exactly these file identities."""
    try:
        record = json.loads(_record(folder, path, fingerprint).read_text())
        return record["fingerprint"] == fingerprint and record["files"] == files
    except (OSError, ValueError, KeyError, TypeError):
        return False


def remember(folder, path, fingerprint, files):
    """Record a full verification, atomically; returns False when the cache cannot be written."""
    target = _record(folder, path, fingerprint)
    record = {"store": str(Path(path).resolve()), "fingerprint": fingerprint, "files": files}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".record-", dir=target.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        return False
    return True
