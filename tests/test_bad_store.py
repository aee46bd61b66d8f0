"""Bad stores and models: refused with what to re-run; interrupted writes leave nothing; budgets hold."""

import hashlib
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DIM, ROOT, TOPICS, vector_rows
from external_embeddings.store import embedding_store as store_module
from external_embeddings.errors import InputError, MemoryBudgetError
from external_embeddings.store import EmbeddingStore, write_store

FILES = ("store.json", "vectors.npy", "vocab.txt", "vocab_offsets.npy", "index_hashes.npy", "index_rows.npy")
TOKENS = [["orbit", "the", "zorblax", "moon"], ["doctor"], [], list(TOPICS["rec.sport"]) * 2]


def make_store(path, seed=0):
    rows = vector_rows(seed)
    write_store([w for w, _ in rows], np.array([v for _, v in rows], dtype=np.float32), path, {"file": "tiny.txt"})
    return Path(path)


def refusal(path, verify=True):
    """The message of the InputError that opening the store at ``path`` raises."""
    with pytest.raises(InputError) as raised:
        EmbeddingStore.open(path, verify=verify)
    message = str(raised.value)
    assert f"re-create it: remove {path} and run python -m external_embeddings convert" in message
    return message


def leftovers(folder):
    return [p.name for p in Path(folder).iterdir() if ".partial-" in p.name or ".old-" in p.name]


# ## Missing, truncated, corrupt


@pytest.mark.parametrize("name", FILES)
def test_a_store_with_a_missing_file_is_refused_naming_it(tmp_path, name):
    path = make_store(tmp_path / "store")
    (path / name).unlink()
    message = refusal(path, verify=False)
    assert message.startswith(str(path / name) if name != "store.json" else f"{path}: is not an embedding store")


@pytest.mark.parametrize("name", [*FILES, "index_buckets.npy"])
def test_a_store_with_a_truncated_file_is_refused_naming_it(tmp_path, name):
    path = make_store(tmp_path / "store")
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[:len(data) // 2])
    message = refusal(path, verify=False)
    assert message.startswith(f"{path / name}: ")
    assert any(what in message for what in ("truncated or corrupt", "is corrupt", "bytes, expected", "holds ("))


@pytest.mark.parametrize("name, offset", [
    ("vectors.npy", -5), ("vocab.txt", 3), ("vocab_offsets.npy", -16), ("index_hashes.npy", -3),
    ("index_rows.npy", -8), ("index_buckets.npy", -3), ("index_buckets.npy", -10),
])
def test_a_store_with_a_changed_byte_is_refused_by_verify(tmp_path, name, offset):
    path = make_store(tmp_path / "store")
    data = bytearray((path / name).read_bytes())
    data[offset] ^= 0x01  # the same size, so only the contents can tell
    (path / name).write_bytes(bytes(data))
    message = refusal(path)
    assert "do not match" in message or "does not match" in message


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy on a flipped dtype such as '|a1'
@pytest.mark.parametrize("name", ["vectors.npy", "index_buckets.npy"])
def test_a_damaged_npy_header_is_one_input_error_never_a_python_error(tmp_path, name):
    """Every byte of the first 128 (the .npy header) with three of its bits flipped in turn.

    numpy reads a header np.save did not write as a Python literal, so a damaged one raised
    tokenize.TokenError, SyntaxError or TypeError before; each must be "truncated or corrupt",
    or harmless (say '<' flipped to '='), in which case the store opens, verifies and reads the same.
    """
    path = make_store(tmp_path / "store")
    words = [w for w, _ in vector_rows()]
    right = EmbeddingStore.open(path)
    right_vectors, right_ids = np.array(right.vectors), right.lookup(words)
    original = (path / name).read_bytes()
    refused = 0
    for position in range(128):
        for bit in (0, 3, 6):
            damaged = bytearray(original)
            damaged[position] ^= 1 << bit
            (path / name).write_bytes(bytes(damaged))
            try:
                opened = EmbeddingStore.open(path, verify="full")
            except InputError as e:
                refused += 1
                assert str(e).startswith(f"{path / name}: ") or str(e).startswith(f"{path}: files do not match")
                continue
            assert np.array_equal(opened.vectors, right_vectors) and opened.lookup(words) == right_ids
    assert refused > 128 * 3 * 0.9
    (path / name).write_bytes(original)


@pytest.mark.parametrize("buckets", [np.zeros(4, np.int64), np.zeros((3, 3), np.int64), np.zeros(5, np.int32)])
def test_a_bucket_table_of_the_wrong_shape_is_refused_on_open(tmp_path, buckets):
    path = make_store(tmp_path / "store")
    np.save(path / "index_buckets.npy", buckets)
    assert refusal(path, verify=False).startswith(f"{path / 'index_buckets.npy'}: holds {buckets.shape} {buckets.dtype}")


def test_a_damaged_bucket_table_only_loses_words_until_verify_refuses_it(tmp_path):
    """Every hit is confirmed against vocab.txt, so wrong buckets can hide a word, never give another's id."""
    path = make_store(tmp_path / "store")
    right = EmbeddingStore.open(path).lookup([w for w, _ in vector_rows()])
    np.save(path / "index_buckets.npy", np.load(path / "index_buckets.npy")[::-1].copy())
    damaged = EmbeddingStore.open(path).lookup([w for w, _ in vector_rows()])
    assert damaged.items() <= right.items() and len(damaged) < len(right)
    assert refusal(path).startswith(f"{path / 'index_buckets.npy'}: does not match index_hashes.npy")


def test_verify_catches_an_index_whose_entries_were_swapped(tmp_path):
    path = make_store(tmp_path / "store")
    rows = np.load(path / "index_rows.npy")
    rows[[0, 1]] = rows[[1, 0]]  # still a permutation of the rows, but lookups would return the wrong word
    np.save(path / "index_rows.npy", rows)
    assert refusal(path).startswith(f"{path / 'index_hashes.npy'}: and index_rows.npy do not match vocab.txt")


@pytest.mark.parametrize("change, expected", [
    (lambda m: m.update(fingerprint="0" * 64), "files do not match the fingerprint in store.json"),
    (lambda m: m.update(dim=50), "vectors.npy: holds (34, 8) float32, store.json says (34, 50) float32"),
    (lambda m: m.update(count=33), "holds (34, 8) float32, store.json says (33, 8) float32"),
    (lambda m: m.update(count="34"), "store.json: is corrupt (count and dim must be whole numbers"),
    (lambda m: m.update(dim=-1), "store.json: is corrupt (count and dim must be whole numbers"),
    (lambda m: m.update(dtype="float99"), "store.json: is corrupt"),
    (lambda m: m.pop("fingerprint"), "store.json: is corrupt"),
    (lambda m: m.update(format=7), "store.json: has format 7, expected 1"),
])
def test_a_manifest_that_does_not_match_the_files_is_refused(tmp_path, change, expected):
    path = make_store(tmp_path / "store")
    manifest = json.loads((path / "store.json").read_text())
    change(manifest)
    (path / "store.json").write_text(json.dumps(manifest))
    assert expected in refusal(path)


def test_a_manifest_that_is_not_json_is_refused(tmp_path):
    path = make_store(tmp_path / "store")
    (path / "store.json").write_text("[1, 2")
    assert refusal(path).startswith(f"{path / 'store.json'}: is corrupt")


def verify(path):
    return subprocess.run([sys.executable, "-m", "external_embeddings", "verify", str(path)],
                          capture_output=True, text=True, cwd=ROOT)


def verify_refusal(path):
    """The lines that a refused ``verify`` prints, after checking it failed without a traceback."""
    done = verify(path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    return done.stderr.splitlines()


def test_verify_command_passes_a_good_store_and_refuses_a_changed_one_on_one_line(tmp_path):
    path = make_store(tmp_path / "store")
    done = verify(path)
    assert done.returncode == 0 and "verified" in done.stdout, done.stderr
    with open(path / "vectors.npy", "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x7f")
    assert verify_refusal(path) == [
        f"error: {path}: files do not match the fingerprint in store.json (changed or corrupt); "
        f"re-create it: remove {path} and run python -m external_embeddings convert VECTORS_FILE {path}"]


def test_verify_command_on_a_folder_that_is_no_store_is_one_line(tmp_path):
    assert verify_refusal(tmp_path) == [
        f"error: {tmp_path}: is not an embedding store (no store.json); "
        f"re-create it: remove {tmp_path} and run python -m external_embeddings convert VECTORS_FILE {tmp_path}"]


def test_verify_command_on_a_vectors_file_says_to_convert_it(tmp_path):
    source = tmp_path / "glove.txt"
    source.write_text("the 0.1 0.2\n")
    assert verify_refusal(source) == [f"error: {source}: is a file, not an embedding store folder; "
                                        f"convert it first: python -m external_embeddings convert {source} STORE_DIR"]
    assert source.exists()


# ## Interrupted conversions


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("calls_before_failure", [0, 1, 3])
@pytest.mark.parametrize("error", [Interrupted, KeyboardInterrupt, OSError])
def test_an_interrupted_write_leaves_no_store_and_no_partial_folder(tmp_path, monkeypatch, calls_before_failure,
                                                                    error):
    real_save, calls = np.save, []

    def failing_save(*args, **kwargs):
        calls.append(args[0])
        if len(calls) > calls_before_failure:
            raise error("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(store_module.np, "save", failing_save)
    with pytest.raises(InputError if error is OSError else error):  # a failed write is one clear error
        make_store(tmp_path / "store")
    assert not (tmp_path / "store").exists() and leftovers(tmp_path) == []
    monkeypatch.undo()
    assert EmbeddingStore.open(make_store(tmp_path / "store"), verify=True).count == 34  # a retry works


def test_a_failure_writing_the_manifest_leaves_no_store(tmp_path, monkeypatch):
    real_write_text = Path.write_text

    def failing_write_text(self, *args, **kwargs):
        if self.name == "store.json":
            raise KeyboardInterrupt
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing_write_text)
    with pytest.raises(KeyboardInterrupt):
        make_store(tmp_path / "store")
    assert not (tmp_path / "store").exists() and leftovers(tmp_path) == []


def test_an_interrupted_conversion_keeps_an_existing_empty_target_empty(tmp_path, monkeypatch):
    from external_embeddings.sources import convert_file
    from conftest import write_vectors

    (tmp_path / "store").mkdir()
    source = write_vectors(tmp_path / "tiny.txt")
    monkeypatch.setattr(store_module.np, "save", lambda *a, **k: (_ for _ in ()).throw(Interrupted()))
    with pytest.raises(Interrupted):
        convert_file(source, tmp_path / "store", progress=False)
    assert list((tmp_path / "store").iterdir()) == [] and leftovers(tmp_path) == []
    assert refusal(tmp_path / "store").startswith(f"{tmp_path / 'store'}: is not an embedding store")


# ## Many processes, one store


def read_in_process(path, barrier, results):
    """Run in a child process: open the store when all are ready, return hashes of what it read."""
    barrier.wait(timeout=60)
    store = EmbeddingStore.open(path, verify=True)
    batch = store.batch(TOKENS, 12)
    results.put((hashlib.sha256(batch.tobytes()).hexdigest(), store.ids(TOKENS[0]).tolist(), store.fingerprint))


def test_processes_opening_one_store_at_once_read_the_same(tmp_path):
    path = make_store(tmp_path / "store")
    store = EmbeddingStore.open(path)
    expected = (hashlib.sha256(store.batch(TOKENS, 12).tobytes()).hexdigest(), store.ids(TOKENS[0]).tolist(),
                store.fingerprint)
    context = multiprocessing.get_context("spawn")  # fresh processes, as separate scripts would be
    barrier, results = context.Barrier(4), context.Queue()
    workers = [context.Process(target=read_in_process, args=(path, barrier, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert got == [expected] * 4
    assert expected[1][2] == 0 and expected[1][0] > 0  # "zorblax" is unknown, "orbit" is found


# ## Models from elsewhere


def external_manifest(store):
    from external_embeddings.text import tokenizer

    return {"kind": "external", "tokenizer": tokenizer.SETTINGS, "store": store.describe(),
            "labels": list(TOPICS), "sequence_length": 150}


def test_a_baseline_manifest_is_accepted_from_any_store_but_an_unknown_kind_is_refused(tmp_path, store):
    from external_embeddings.predictor import check_manifest

    other = EmbeddingStore.open(make_store(tmp_path / "other", seed=1))
    check_manifest(dict(external_manifest(other), kind="baseline"), "b/manifest.json", store)  # vectors inside it
    with pytest.raises(InputError) as raised:
        check_manifest(dict(external_manifest(store), kind="onnx"), "output/x/manifest.json", store)
    assert str(raised.value) == ("output/x/manifest.json: is a onnx model, not an external or baseline one; "
                                 "serve only models from the two scripts")


def test_an_external_model_from_another_store_is_refused(tmp_path, store):
    from external_embeddings.predictor import check_manifest

    other = EmbeddingStore.open(make_store(tmp_path / "other", seed=1))
    assert other.dim == store.dim and other.fingerprint != store.fingerprint
    with pytest.raises(InputError) as raised:
        check_manifest(external_manifest(other), "models/b/manifest.json", store)
    message = str(raised.value)
    assert message.startswith(f"models/b/manifest.json: was trained with store {other.path} "
                              f"(fingerprint {other.fingerprint[:12]}, dim {DIM}), not with {store.path}")
    assert "open the store it was trained with, or retrain it on this one" in message
    check_manifest(external_manifest(store), "models/b/manifest.json", store)  # the right store: accepted


def test_a_model_manifest_without_a_store_is_refused(store):
    from external_embeddings.predictor import check_manifest

    with pytest.raises(InputError, match="was trained with store None"):
        check_manifest({"kind": "external"}, "m/manifest.json", store)


@pytest.mark.parametrize("manifest", [[1], "external", {"kind": "external", "store": ["x"]}])
def test_a_manifest_that_is_not_an_object_is_refused(store, manifest):
    from external_embeddings.predictor import check_manifest

    with pytest.raises(InputError, match="m/manifest.json: is not a model manifest"):
        check_manifest(manifest, "m/manifest.json", store)


# ## Memory budget


def test_gather_and_batch_refuse_more_than_the_budget_and_say_how_much(store):
    small = EmbeddingStore.open(store.path, max_bytes=1000)
    assert small.gather(np.ones((2, 10), dtype=np.int64)).shape == (2, 10, DIM)  # 640 bytes: fine
    assert small.batch([["orbit"], ["moon", "the"]], 10).shape == (2, 10, DIM)
    with pytest.raises(MemoryBudgetError) as raised:
        small.gather(np.ones((100, 10), dtype=np.int64))
    assert str(raised.value).startswith(f"{store.path}: refusing to build a (100, 10, 8) float32 array of 31.25 KiB "
                                        "(the limit is 1,000 bytes)")
    assert "MAX_MATERIALIZE_BYTES" in str(raised.value)
    with pytest.raises(MemoryBudgetError, match=r"\(4, 1000, 8\) float32 array of 125.00 KiB"):
        small.batch(TOKENS, 1000)


def test_a_huge_request_is_refused_before_any_memory_is_used(store):
    with pytest.raises(MemoryBudgetError, match=r"array of 2,980.23 GiB \(the limit is 2.00 GiB\)"):
        store.gather(np.broadcast_to(np.int64(1), (10**8, 1000)))  # a view: ids that take no memory


@pytest.mark.parametrize("ids", [[0, 35], [-1, 2], [1.0, 2.0]])
def test_gather_refuses_ids_outside_the_store(store, ids):
    with pytest.raises(InputError, match=r"cannot gather ids outside 0\.\.34"):
        store.gather(np.array(ids))


def test_batch_refuses_a_sequence_length_below_one(store):
    with pytest.raises(InputError, match="cannot pad to a sequence length of 0"):
        store.batch(TOKENS, 0)
