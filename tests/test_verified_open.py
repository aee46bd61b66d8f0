"""Constant-time open: a store is hashed once per file identity; a changed file is still refused."""

import mmap
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, vector_rows
from external_embeddings.store import embedding_store as store_module
from external_embeddings.store import verified
from external_embeddings.errors import InputError
from external_embeddings.store import EmbeddingStore, write_store


def make_store(path):
    rows = vector_rows()
    write_store([w for w, _ in rows], np.array([v for _, v in rows], dtype=np.float32), path, {"file": "tiny.txt"})
    return Path(path)


@pytest.fixture
def hashes(monkeypatch):
    """Count full verifications (each checks the word index after the fingerprint)."""
    calls = []
    real = store_module._check_index
    monkeypatch.setattr(store_module, "_check_index", lambda *a: calls.append(1) or real(*a))
    return calls


def open_store(path, records, verify=True):
    return EmbeddingStore.open(path, verify=verify, verified_dir=records)


def flip_byte_keep_mtime(file, offset=-3):
    """Change one byte in place and set mtime back: size and mtime match, only ctime tells."""
    before = os.stat(file)
    data = bytearray(file.read_bytes())
    data[offset] ^= 1
    with open(file, "r+b") as f:
        f.write(data)
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(file)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def test_second_open_does_not_hash_and_records_live_in_the_given_folder(tmp_path, hashes):
    path = make_store(tmp_path / "store")
    open_store(path, tmp_path / "records")
    assert len(hashes) == 1 and len(list((tmp_path / "records").glob("*.json"))) == 1
    open_store(path, tmp_path / "records")
    open_store(path, tmp_path / "records")
    assert len(hashes) == 1
    open_store(path, tmp_path / "other-records")  # another cache knows nothing: verify again
    assert len(hashes) == 2


def test_full_verify_always_hashes(tmp_path, hashes):
    path = make_store(tmp_path / "store")
    open_store(path, tmp_path / "records")
    open_store(path, tmp_path / "records", verify="full")
    EmbeddingStore.open(path).verify(tmp_path / "records")
    assert len(hashes) == 3


@pytest.mark.parametrize("name", ["vectors.npy", "vocab.txt", "index_rows.npy", "vocab_offsets.npy", "index_buckets.npy"])
def test_a_byte_changed_after_verification_is_refused_even_with_mtime_kept(tmp_path, name):
    path = make_store(tmp_path / "store")
    open_store(path, tmp_path / "records")
    flip_byte_keep_mtime(path / name, offset={"vocab.txt": 2, "vocab_offsets.npy": -16}.get(name, -3))
    with pytest.raises(InputError, match="match"):
        open_store(path, tmp_path / "records")


def test_a_file_truncated_or_replaced_after_verification_is_refused(tmp_path):
    path = make_store(tmp_path / "store")
    open_store(path, tmp_path / "records")
    data = (path / "vectors.npy").read_bytes()
    (path / "vectors.npy").write_bytes(data[:-8])
    with pytest.raises(InputError, match="vectors.npy: is truncated or corrupt"):
        open_store(path, tmp_path / "records")
    other = np.load(path.parent / "store" / "index_rows.npy")
    (path / "vectors.npy").write_bytes(data)  # the right size again, but a new file: re-verified
    other[[0, 1]] = other[[1, 0]]
    np.save(path / "index_rows.npy", other)
    with pytest.raises(InputError, match="index_rows.npy do not match"):
        open_store(path, tmp_path / "records")


def test_the_verify_command_checks_everything_whatever_the_records_say(tmp_path):
    """A forged record (as if a change kept every identity) fools verify=True, never the command."""
    path = make_store(tmp_path / "store")
    flip_byte_keep_mtime(path / "vectors.npy")
    fingerprint = EmbeddingStore.open(path).fingerprint
    assert verified.remember(None, path, fingerprint, verified.identities(path))  # $KEE_CACHE_DIR/verified
    assert open_store(path, None).count == 34  # trusted: the record matches every identity
    done = subprocess.run([sys.executable, "-m", "external_embeddings", "verify", str(path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "do not match the fingerprint" in done.stderr


def test_a_copied_store_is_verified_again(tmp_path, hashes):
    path = make_store(tmp_path / "store")
    open_store(path, tmp_path / "records")
    shutil.copytree(path, tmp_path / "copy")
    open_store(tmp_path / "copy", tmp_path / "records")
    assert len(hashes) == 2


def test_an_unwritable_cache_or_read_only_store_still_opens(tmp_path, hashes):
    path = make_store(tmp_path / "store")
    (tmp_path / "file").write_text("not a folder")
    for _ in range(2):
        assert open_store(path, tmp_path / "file" / "verified").count == 34
    assert len(hashes) == 2  # nothing remembered, so every open verifies fully
    for f in path.iterdir():
        f.chmod(0o444)
    path.chmod(0o555)
    try:
        open_store(path, tmp_path / "records")
        open_store(path, tmp_path / "records")
    finally:
        path.chmod(0o755)
    assert len(hashes) == 3


RESIDENT = """
import os, sys
from external_embeddings.store import EmbeddingStore

def resident():  # bytes of vectors.npy mapped into this process
    rss, inside = 0, False
    for line in open("/proc/self/smaps"):
        if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
            inside = line.rstrip().endswith("/vectors.npy")
        elif inside and line.startswith("Rss:"):
            rss += int(line.split()[1]) * 1024
    return rss

store = EmbeddingStore.open(sys.argv[1], verify=sys.argv[3] if sys.argv[3] == "full" else True,
                            verified_dir=sys.argv[2])
opened = resident()
store.gather(store.ids(["w7", "w20000", "w31000"]))
print(opened, resident())
"""


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_a_fresh_process_maps_only_the_rows_it_looks_up(tmp_path):
    """After the first verification, opening maps no vector page; a full verify maps them all.

    The file starts out of the page cache, as a store nobody read lately: without MADV_RANDOM
    three lookups would read ahead (here the whole file) and map ~36 pages. (With the file
    already cached, the kernel maps its whole cached folios or 64 KiB around each row.)
    """
    count, dim = 32768, 128  # 16 MiB
    matrix = np.random.default_rng(0).standard_normal((count, dim)).astype(np.float32)
    path = tmp_path / "store"
    write_store([f"w{i}" for i in range(count)], matrix, path, {"file": "big"})
    records = tmp_path / "records"
    open_store(path, records)  # verified here, in this process

    def resident(mode):
        fd = os.open(path / "vectors.npy", os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        done = subprocess.run([sys.executable, "-c", RESIDENT, str(path), str(records), mode],
                              capture_output=True, text=True, cwd=ROOT, check=True)
        return [int(n) for n in done.stdout.split()]

    size = (path / "vectors.npy").stat().st_size
    opened, looked_up = resident("once")
    assert opened == 0 and looked_up <= 16 * mmap.PAGESIZE  # three rows: a handful of pages of 16 MiB
    assert resident("full")[0] > 0.9 * size
