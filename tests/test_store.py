"""Converting a vectors file into a store, opening it, and looking words up."""

import json
import mmap
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, vector_rows, write_vectors
from external_embeddings.store import embedding_store as store_module
from external_embeddings.errors import InputError
from external_embeddings.store import EmbeddingStore, write_store


def convert(source, target, *options):
    return subprocess.run([sys.executable, "-m", "external_embeddings", "convert", str(source), str(target),
                           "--quiet", *options], capture_output=True, text=True, cwd=ROOT)


def test_convert_command_writes_a_store_that_holds_the_file(tmp_path, vectors_file):
    done = convert(vectors_file, tmp_path / "store")
    assert done.returncode == 0, done.stderr
    assert "Converted 34 words of dimension 8" in done.stdout
    manifest = json.loads((tmp_path / "store" / "store.json").read_text())
    assert manifest["dim"] == 8 and manifest["count"] == 34 and manifest["dtype"] == "float32"
    assert manifest["source"]["file"] == "tiny.txt" and manifest["source"]["bytes"] == vectors_file.stat().st_size
    assert len(manifest["fingerprint"]) == 64
    store = EmbeddingStore.open(tmp_path / "store", verify=True)
    rows = vector_rows()
    assert [store.word(i) for i in range(store.count)] == [w for w, _ in rows]  # file order
    vectors = store.gather(store.ids([w for w, _ in rows]))
    np.testing.assert_allclose(vectors, [v for _, v in rows], atol=1e-6)  # the file holds 6 decimals
    assert isinstance(store.vectors.base, mmap.mmap)  # mapped, not read


def test_float16_store_gathers_float32_close_to_the_file(tmp_path, vectors_file):
    assert convert(vectors_file, tmp_path / "half", "--dtype=float16").returncode == 0
    half = EmbeddingStore.open(tmp_path / "half")
    assert half.vectors.dtype == np.float16
    out = half.gather(half.ids(["orbit", "nope"]))
    assert out.dtype == np.float32 and not out[1].any()
    np.testing.assert_allclose(out[0], vector_rows()[0][1], atol=2e-3)


def test_same_vectors_give_the_same_fingerprint_and_other_vectors_another(tmp_path, vectors_file):
    other = write_vectors(tmp_path / "other.txt", vector_rows(seed=1))
    for source, target in ((vectors_file, "a"), (vectors_file, "b"), (other, "c")):
        assert convert(source, tmp_path / target).returncode == 0
    a, b, c = (EmbeddingStore.open(tmp_path / n).fingerprint for n in "abc")
    assert a == b != c


def test_ids_are_rows_plus_one_and_zero_for_unknown_words(store):
    ids = store.ids(["the", "orbit", "zorblax", "orbit"])
    assert ids[2] == 0 and ids[1] == ids[3]
    assert store.word(ids[0] - 1) == "the" and store.word(ids[1] - 1) == "orbit"


class CountingList(list):
    """A vocabulary as the external script builds it (a list, saved as vocabulary.json), counting
    the membership tests made on it: each one scans the list, so one per word is quadratic."""

    tests = 0

    def __contains__(self, word):
        type(self).tests += 1
        return super().__contains__(word)


def test_a_vocabulary_given_as_a_list_is_tested_as_a_set(store):
    """STORE_VOCABULARY=false took 7.8 s for 20,000 distinct words when each was looked for in the list."""
    vocabulary = CountingList(["orbit", "doctor", "the", "zorblax", *(f"filler{i}" for i in range(2000))])
    words = ["orbit", "moon", "the", "zorblax", "doctor", *(f"word{i}" for i in range(2000))] * 2
    CountingList.tests = 0
    found = store.word_index(words, vocabulary)
    batch = store.batch([words], 160, vocabulary)
    assert CountingList.tests == 0  # one pass to make a set, not one scan per word
    assert found == store.word_index(words, set(vocabulary))
    assert list(found) == ["orbit", "the", "zorblax", "doctor"] and found["zorblax"] == 0
    np.testing.assert_array_equal(batch, store.batch([words], 160, frozenset(vocabulary)))


def test_lookup_stays_exact_when_every_hash_collides(store, monkeypatch):
    """The hash only narrows the search; the word's bytes decide. Force all hashes equal."""
    expected = {w: store.ids([w])[0] for w, _ in vector_rows()}
    same = lambda words: np.zeros(len(words), dtype="<u8")  # noqa: E731
    monkeypatch.setattr(store_module, "word_hashes", same)
    monkeypatch.setattr(store, "_hashes", np.zeros(store.count, dtype="<u8"))
    assert store.lookup(list(expected) + ["zorblax"]) == expected


def test_lookup_confirms_each_word_when_some_hashes_collide(tmp_path, monkeypatch):
    """Words of equal and of other lengths share hashes in pairs; every word still finds its own row."""
    words = ["orbit", "tibro", "moon", "mooncake", "é", "e", "caf\u00e9", "cafe", "x" * 300, "y" * 300, "a"]
    pair = lambda encoded: np.array([len(w) // 2 if len(w) < 200 else 7 for w in encoded], dtype="<u8")  # noqa: E731
    monkeypatch.setattr(store_module, "word_hashes", pair)
    path = tmp_path / "store"
    write_store(words, np.arange(len(words) * 2, dtype=np.float32).reshape(-1, 2), path, {"file": "pairs"})
    store = EmbeddingStore.open(path)
    queries = words[::-1] + ["", "orbix", "mooncakes", "caf", "z" * 300, "orbit"]
    assert store.lookup(queries) == {w: i + 1 for i, w in enumerate(words)}
    assert store.ids(["", "x" * 300, "é", "nope"]).tolist() == [0, 9, 5, 0]


def test_lookup_finds_every_word_of_a_bigger_store_and_no_other(tmp_path):
    words = [f"w{i:x}" for i in range(5000)] + ["naïve", "日本語", "a b"]
    write_store(words, np.ones((len(words), 2), np.float32), tmp_path / "s", {"file": "big"})
    store = EmbeddingStore.open(tmp_path / "s")
    queries = words[::3] + [f"w{i:x}" for i in range(5000, 5300)] + ["", "naive", "日本"]
    assert store.lookup(queries) == {w: words.index(w) + 1 for w in words[::3]}


def test_a_store_written_before_index_buckets_still_opens_verifies_and_finds_every_word(tmp_path):
    words = [f"w{i:x}" for i in range(3000)]
    write_store(words, np.ones((len(words), 2), np.float32), tmp_path / "s", {"file": "old"})
    queries = words[::7] + ["nope", "w", ""]
    with_buckets = EmbeddingStore.open(tmp_path / "s").lookup(queries)
    assert len(with_buckets) == len(words[::7])
    (tmp_path / "s" / "index_buckets.npy").unlink()
    for verify in (False, True, "full"):
        store = EmbeddingStore.open(tmp_path / "s", verify=verify, verified_dir=tmp_path / "records")
        assert store._buckets is None and store.lookup(queries) == with_buckets


@pytest.mark.parametrize("count", [1, 2, 17, 5000])
def test_bucket_search_agrees_with_searchsorted(tmp_path, count):
    words = [f"w{i}" for i in range(count)]
    write_store(words, np.ones((count, 1), np.float32), tmp_path / "s", {"file": "n"})
    store = EmbeddingStore.open(tmp_path / "s")
    assert len(store._buckets) == 2 ** store_module.bucket_bits(count) + 1
    probes = np.concatenate([store._hashes, store._hashes + np.uint64(1), store._hashes - np.uint64(1),
                             np.array([0, 2**64 - 1], dtype=np.uint64),
                             np.random.default_rng(0).integers(0, 2**64 - 1, 500, dtype=np.uint64, endpoint=True)])
    np.testing.assert_array_equal(store._search(probes), np.searchsorted(store._hashes, probes))


@pytest.mark.parametrize("array", [
    np.arange(12, dtype="<f4").reshape(3, 4), np.arange(5, dtype=np.int64), np.zeros((0, 3), np.float16),
    np.asfortranarray(np.arange(6, dtype="<u8").reshape(2, 3)), np.array(3.5), np.arange(4, dtype=">i4"),
    np.arange(3, dtype=np.int8)])
@pytest.mark.parametrize("version", [None, (2, 0)])
def test_map_npy_maps_what_numpy_writes(tmp_path, array, version):
    """np.save's headers are read by a regular expression; any other version goes through numpy's reader."""
    with open(tmp_path / "a.npy", "wb") as f:
        np.lib.format.write_array(f, array, version=version)
    mapped = store_module._map_npy(tmp_path / "a.npy")
    assert isinstance(mapped.base, mmap.mmap) and mapped.dtype == array.dtype and mapped.shape == array.shape
    np.testing.assert_array_equal(mapped, array)
    assert (store_module._npy_header((tmp_path / "a.npy").read_bytes()[:4096]) is None) == (version is not None)


def test_open_and_lookup_never_import_tensorflow(store):
    code = ("import sys; from external_embeddings import EmbeddingStore, Predictor; "
            f"s = EmbeddingStore.open({str(store.path)!r}, verify=True); s.batch([['orbit']], 5); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_convert_refuses_to_overwrite_a_store(tmp_path, vectors_file):
    assert convert(vectors_file, tmp_path / "store").returncode == 0
    again = convert(vectors_file, tmp_path / "store")
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.parametrize("target, message", [
    ("a_file", "a_file: is a file, not a folder; give a new folder for the store"),
    ("a_file/sub", "a_file/sub: cannot be created: {tmp}/a_file is a file; give a folder path for the store"),
])
def test_convert_into_a_file_is_one_error(tmp_path, vectors_file, target, message):
    (tmp_path / "a_file").write_text("not a folder")
    done = convert(vectors_file, tmp_path / target)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == f"error: {tmp_path}/{message.format(tmp=tmp_path)}"


def test_gather_refuses_to_build_more_than_the_budget(tmp_path, vectors_file):
    assert convert(vectors_file, tmp_path / "store").returncode == 0
    small = EmbeddingStore.open(tmp_path / "store", max_bytes=1000)
    assert small.gather(np.ones((2, 10), dtype=np.int64)).shape == (2, 10, 8)  # 640 bytes: fine
    with pytest.raises(InputError, match=r"\(100, 10, 8\) float32"):
        small.gather(np.ones((100, 10), dtype=np.int64))
