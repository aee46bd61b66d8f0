"""Quantized stores: int8 codes with a float32 scale per row, float16, and store-to-store convert."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, vector_rows
from external_embeddings.errors import InputError
from external_embeddings.store import EmbeddingStore, write_store

WORDS = [w for w, _ in vector_rows()]


def matrix(seed=0):
    """The fixture's vectors with rows of very different norms, a zero row and a one-hot row."""
    m = np.array([v for _, v in vector_rows(seed)], dtype=np.float32)
    m[1] *= 1000.0
    m[2] *= 1e-4
    m[3] = 0.0
    m[4] = 0.0
    m[4, 5] = -2.5
    return m


def make(path, dtype, m=None):
    write_store(WORDS, matrix() if m is None else m, path, {"file": "tiny.txt"}, dtype=dtype)
    return EmbeddingStore.open(path, verify="full")


def test_int8_round_trip_is_within_half_a_step_per_row(tmp_path):
    m = matrix()
    store = make(tmp_path / "q", "int8", m)
    assert store.vectors.dtype == np.int8 and store.scales.dtype == np.float32
    np.testing.assert_allclose(store.scales, np.abs(m).max(axis=1) / 127, rtol=1e-6)
    out = store.gather(np.arange(1, store.count + 1))
    assert out.dtype == np.float32
    error = np.abs(out - m).max(axis=1)
    assert np.all(error <= store.scales / 2 * (1 + 1e-5))
    assert error[1] > 1e-3  # the big row's step is coarse: the bound is tight, not trivially met
    assert not out[3].any() and np.array_equal(out[4], m[4])  # zeros stay zero; a row's peak is exact


def test_int8_ids_zero_and_unknown_words_gather_zeros(tmp_path):
    store = make(tmp_path / "q", "int8")
    out = store.gather(store.ids(["zorblax", "orbit"]))
    assert not out[0].any() and out[1].any()
    padded = store.batch([["orbit"]], seq_len=4)
    assert padded.shape == (1, 4, 8) and not padded[0, :3].any()


def test_fingerprint_covers_the_scales(tmp_path):
    store = make(tmp_path / "q", "int8")
    scales = np.load(store.path / "scales.npy")
    scales[5] *= 1.5
    np.save(store.path / "scales.npy", scales)
    with pytest.raises(InputError, match="do not match the fingerprint"):
        EmbeddingStore.open(store.path, verify="full")


def test_int8_store_without_scales_is_refused(tmp_path):
    store = make(tmp_path / "q", "int8")
    (store.path / "scales.npy").unlink()
    with pytest.raises(InputError, match="scales.npy: is missing"):
        EmbeddingStore.open(store.path)


def test_manifest_records_dtype_and_int8_stores_are_format_2(tmp_path):
    """Format 2 makes code that predates scales.npy refuse an int8 store instead of gathering raw codes."""
    for dtype, form in (("float32", 1), ("float16", 1), ("int8", 2)):
        store = make(tmp_path / dtype, dtype)
        manifest = json.loads((store.path / "store.json").read_text())
        assert (manifest["dtype"], manifest["format"]) == (dtype, form)
        assert store.describe()["dtype"] == dtype
    manifest["format"] = 1
    (tmp_path / "int8" / "store.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="has format 1, expected 2 for a int8 store"):
        EmbeddingStore.open(tmp_path / "int8")


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("id_type", [np.uint8, np.uint32, np.uint64, np.int32, np.int64])
def test_gather_takes_unsigned_ids(tmp_path, dtype, id_type):
    """uint ids once wrapped at ``ids - 1`` (0 became 4294967295)."""
    store = make(tmp_path / dtype, dtype)
    ids = np.array([[0, 1, 34]], dtype=id_type)
    out = store.gather(ids)
    assert out.shape == (1, 3, 8) and not out[0, 0].any()
    np.testing.assert_array_equal(out, store.gather(ids.astype(np.int64)))
    assert out[0, 1].any() and out[0, 2].any()
    with pytest.raises(InputError, match="outside 0..34"):
        store.gather(np.array([35], dtype=id_type))


def convert(source, target, *options):
    return subprocess.run([sys.executable, "-m", "external_embeddings", "convert", str(source), str(target),
                           "--quiet", *options], capture_output=True, text=True, cwd=ROOT)


def test_convert_rewrites_a_store_in_another_dtype(tmp_path):
    make(tmp_path / "f32", "float32")
    for dtype in ("int8", "float16", "float32"):
        done = convert(tmp_path / "f32", tmp_path / f"to-{dtype}", f"--dtype={dtype}")
        assert done.returncode == 0, done.stderr
        assert f"({dtype}): 34 words of dimension 8" in done.stdout
    source, back = EmbeddingStore.open(tmp_path / "f32"), EmbeddingStore.open(tmp_path / "to-float32")
    assert back.fingerprint == source.fingerprint  # same words, same rows, same values
    q = EmbeddingStore.open(tmp_path / "to-int8", verify="full")
    assert q.manifest["source"]["converted_from"]["fingerprint"] == source.fingerprint
    assert [q.word(i) for i in range(q.count)] == WORDS
    ids = np.arange(1, 35)
    assert np.all(np.abs(q.gather(ids) - source.gather(ids)).max(axis=1) <= q.scales / 2 * (1 + 1e-5))
    # int8 -> float32 keeps the dequantized values exactly
    assert convert(tmp_path / "to-int8", tmp_path / "deq").returncode == 0
    np.testing.assert_array_equal(EmbeddingStore.open(tmp_path / "deq").gather(ids), q.gather(ids))


def test_convert_refuses_a_damaged_source_store(tmp_path):
    make(tmp_path / "f32", "float32")
    data = bytearray((tmp_path / "f32" / "vectors.npy").read_bytes())
    data[-3] ^= 1
    (tmp_path / "f32" / "vectors.npy").write_bytes(bytes(data))
    done = convert(tmp_path / "f32", tmp_path / "q", "--dtype=int8")
    assert done.returncode == 2 and "do not match the fingerprint" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "q").exists()
