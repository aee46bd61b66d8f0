"""The Predictor serves externalized models (a tokenizer spec, rows.npy into the store, a mask
input) beside the scripts' models, and each answers as its original end-to-end model does."""

import json
import shutil

import keras
import numpy as np
import pytest

from conftest import COMMON, TOPICS
from external_embeddings import InputError
from external_embeddings.predictor import Predictor
from external_embeddings.text import specs
from external_embeddings.text.keras2_tokenizer import Keras2Tokenizer
from external_embeddings.text.text_vectorization import TextVectorizationTokenizer
from test_specs import fuzzed_texts

LABELS = ["x", "y", "z"]
STORE_WORDS = [w for words in TOPICS.values() for w in words] + COMMON
OTHER_WORDS = ["zorblax", "quuxify", "naïve", "σοφία", "İstanbul"]


def sample_texts():
    rng = np.random.default_rng(3)
    words = STORE_WORDS + OTHER_WORDS + ["Orbit!", "MOON's", "the-end", "<OOV>"]
    made = [" ".join(rng.choice(words, size=int(rng.integers(0, 30)))) for _ in range(150)]
    return made + fuzzed_texts(150, seed=7) + ["", "zorblax quuxify", "orbit", "Orbit rocket."]


def body(kind):
    """The layers after the Embedding: "avg" and "lstm" use the mask, "conv" does not."""
    first = {"avg": keras.layers.GlobalAveragePooling1D, "lstm": lambda: keras.layers.LSTM(4),
             "conv": lambda: keras.layers.Conv1D(4, 3, padding="same", activation="relu")}[kind]()
    rest = [keras.layers.GlobalMaxPooling1D()] if kind == "conv" else []
    return [first] + rest + [keras.layers.Dense(len(LABELS), activation="softmax")]


def build(store, ids_input, length, embedding_rows, kept, mask, kind, seed):
    """(original model on ids, externalized model on vectors [, mask]) sharing every layer after the Embedding."""
    keras.utils.set_random_seed(seed)
    matrix = store.gather(np.asarray(embedding_rows))
    for i, vector in kept.items():
        matrix[i] = vector
    embedding = keras.layers.Embedding(len(embedding_rows), store.dim, mask_zero=mask, trainable=False)
    layers = body(kind)
    x = embedding(ids_input)
    for layer in layers:
        x = layer(x)
    original = keras.Model(ids_input, x)
    embedding.set_weights([matrix])
    vectors = keras.Input((length, store.dim), name="vectors")
    inputs = [vectors] + ([keras.Input((length,), name="mask", dtype="bool")] if mask else [])
    y = layers[0](vectors, mask=inputs[1]) if mask else layers[0](vectors)
    for layer in layers[1:]:
        y = layer(y)
    return original, keras.Model(inputs, y)


def save(folder, model, spec, vocabulary, store, rows, kept, mask):
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    specs.write_spec_files(folder, spec, vocabulary)
    np.save(folder / "rows.npy", np.asarray(rows, dtype=np.int64))
    if kept:
        np.savez(folder / "kept_rows.npz", ids=np.array(list(kept), dtype=np.int64),
                 vectors=np.array(list(kept.values()), dtype=np.float32))
    length = spec.get("output_sequence_length", spec.get("maxlen"))
    (folder / "manifest.json").write_text(json.dumps({
        "kind": "external", "tokenizer": spec, "sequence_length": length, "labels": LABELS,
        "store": store.describe(), "rows": "rows.npy", "kept_rows": "kept_rows.npz" if kept else None,
        "mask": mask, "source": {"file": "original.keras", "sha256": "0" * 64}, "externalized": {}}))


@pytest.fixture(scope="module")
def mixed(served, tmp_path_factory):
    """A models folder with the scripts' two external models and baseline, four externalized models
    (two TextVectorization, one mask model among them, two Keras 2 Tokenizer ones) and each
    externalized model's original, end to end, as a function of texts."""
    from tf_keras.preprocessing.sequence import pad_sequences
    from tf_keras.preprocessing.text import Tokenizer

    work, store = served
    root = tmp_path_factory.mktemp("mixed")
    shutil.copytree(work / "models", root / "scripts")
    shutil.copytree(work / "baseline", root / "baseline")
    originals = {}
    rng = np.random.default_rng(0)

    # keras-io's way: a TextVectorization layer, then an Embedding of the vocabulary's vectors.
    layer = keras.layers.TextVectorization(max_tokens=20000, output_sequence_length=12)
    layer.adapt([" ".join(STORE_WORDS[:20] + OTHER_WORDS)])
    spec, vocabulary = specs.spec_from_text_vectorization(layer)
    rows = [0, 0] + [int(store.ids([w])[0]) for w in vocabulary[2:]] + [0, 0]  # an Embedding wider than the vocabulary
    kept = {1: rng.normal(0, 1, store.dim).astype(np.float32),  # a trained OOV vector, kept
            vocabulary.index("zorblax"): rng.normal(0, 1, store.dim).astype(np.float32)}
    # tv_other: the same tokenizer, another mapping (its "orbit" row points at "moon"): tokenized once, mapped apart.
    other_rows = list(rows)
    other_rows[vocabulary.index("orbit")] = int(store.ids(["moon"])[0])
    for name, length, mask, kind, model_rows in (("tv_mask", 12, True, "avg", rows), ("tv_short", 7, False, "conv", rows),
                                                 ("tv_other", 10, False, "conv", other_rows)):
        tv = keras.layers.TextVectorization(standardize="lower_and_strip_punctuation", output_sequence_length=length,
                                            vocabulary=vocabulary[2:])
        text_input = keras.Input((1,), dtype="string")
        original, external = build(store, keras.Input((length,), dtype="int32"), length, model_rows, kept, mask,
                                   kind, seed=len(name))
        end_to_end = keras.Model(text_input, original(tv(text_input)))
        originals[name] = lambda texts, m=end_to_end: keras.ops.convert_to_numpy(
            m.predict_on_batch(np.array(texts, dtype=object)[:, None]))
        save(root / name, external, {**spec, "output_sequence_length": length}, vocabulary, store, model_rows, kept,
             mask)

    # A Keras 2 Tokenizer with an OOV token and num_words, with pad_sequences: one model pre/pre, one mixed.
    tokenizer = Tokenizer(num_words=20, oov_token="<OOV>")
    tokenizer.fit_on_texts([" ".join(STORE_WORDS[5:] + OTHER_WORDS[:2])])
    rows = [0] + [int(store.ids([tokenizer.index_word[i]])[0]) for i in range(1, 20)]
    kept = {1: rng.normal(0, 1, store.dim).astype(np.float32)}
    for name, length, sides, mask in (("k2_pre", 9, {}, False), ("k2_pre_short", 5, {}, False),
                                      ("k2_mixed", 6, {"padding": "post"}, True)):
        spec, word_index = specs.spec_from_keras2_json(tokenizer.to_json(), "tokenizer.json", length, **sides)
        original, external = build(store, keras.Input((length,), dtype="int32"), length, rows, kept, mask,
                                   "lstm" if mask else "conv", seed=len(name))
        originals[name] = lambda texts, m=original, n=length, s=sides: keras.ops.convert_to_numpy(
            m.predict_on_batch(pad_sequences(tokenizer.texts_to_sequences(texts), maxlen=n, **s)))
        save(root / name, external, spec, word_index, store, rows, kept, mask)
    return root, store, originals


def test_externalized_models_answer_as_their_originals_beside_the_scripts_models(mixed, monkeypatch):
    root, store, originals = mixed
    predictor = Predictor(store, root)
    assert set(predictor.models) == {"scripts/a/pretrained_external_word_embeddings",
                                     "scripts/b/pretrained_external_word_embeddings",
                                     "baseline/pretrained_word_embeddings", *originals}
    # One group per tokenizer and mapping: the two TextVectorization models, the two Keras 2 ones.
    grouped = sorted(sorted(group) for group in predictor.groups.values())
    assert ["k2_mixed", "k2_pre", "k2_pre_short"] in grouped and ["tv_mask", "tv_short"] in grouped
    assert ["tv_other"] in grouped
    texts = sample_texts()
    calls = {"tv": 0, "k2": 0, "gather": []}
    for cls, kind in ((TextVectorizationTokenizer, "tv"), (Keras2Tokenizer, "k2")):
        monkeypatch.setattr(cls, "numbered", lambda self, t, f=cls.numbered, k=kind: calls.__setitem__(
            k, calls[k] + 1) or f(self, t))
    gather = store.gather
    monkeypatch.setattr(store, "gather", lambda ids: calls["gather"].append(np.shape(ids)) or gather(ids))
    results = predictor.predict(texts)
    chunks = -(-len(texts) // 256)
    assert calls["tv"] == calls["k2"] == chunks  # each text tokenized once per distinct tokenizer
    assert len(calls["gather"]) == 4 * chunks  # and mapped once per mapping: scripts' external, tv, tv_other, k2
    monkeypatch.undo()
    for name, original in originals.items():
        expected = original(texts)
        got = np.array([[r[name]["probabilities"][label] for label in LABELS] for r in results])
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=name)
    direct = Predictor(store, root / "scripts").predict(texts)  # the scripts' models answer as they did alone
    for result, alone in zip(results, direct):
        for name, answer in alone.items():
            assert result["scripts/" + name]["probabilities"] == pytest.approx(answer["probabilities"], abs=1e-6)
            assert result["scripts/" + name]["known_words"] == answer["known_words"]


def test_known_words_of_externalized_models(mixed):
    """Ids that are not padding, not OOV and stand for a nonzero vector, within the model's own input."""
    root, store, _ = mixed
    predictor = Predictor(store, root)
    long_text = " ".join(["shuttle"] * 20)
    empty, unknown, words, long_one = predictor.predict(["", "quuxify naïve! nowhere", "Shuttle, planet; zorblax",
                                                         long_text])
    names = ("tv_mask", "tv_short", "k2_pre", "k2_pre_short", "k2_mixed")
    for result in (empty, unknown):
        assert [result[name]["known_words"] for name in names] == [0] * 5
    # zorblax has a kept vector in the TextVectorization models (not in the store) and is OOV in Keras 2's.
    assert [words[n]["known_words"] for n in names] == [3, 3, 2, 2, 2]
    assert [long_one[n]["known_words"] for n in names] == [12, 7, 9, 5, 6]  # within each model's own length


def _copy_and_change(root, tmp_path, name, change):
    folder = tmp_path / name
    shutil.copytree(root / name, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest, folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("change, message", [
    (lambda m, f: m["tokenizer"].update(kind="sentencepiece"), "has a tokenizer of kind 'sentencepiece'"),
    (lambda m, f: np.save(f / "rows.npy", np.full(30, 10**6)), "rows.npy: holds store ids outside 0..34"),
    (lambda m, f: np.save(f / "rows.npy", np.zeros(3, dtype=np.int64)), "rows.npy: maps 3 ids but the tokenizer"),
    (lambda m, f: np.save(f / "rows.npy", np.zeros(30)), "rows.npy: is not a 1-D integer array"),
    (lambda m, f: (f / "rows.npy").write_bytes(b"junk"), "rows.npy: cannot be read"),
    (lambda m, f: m.update(rows="../rows.npy"), "names no rows file"),
    (lambda m, f: m.update(mask=False), "has a model taking vectors (12, 8), mask (12,), but its manifest says vectors"),
    (lambda m, f: m.update(mask="yes"), "has mask='yes'"),
    (lambda m, f: m.update(sequence_length=11), "has sequence_length 11 but its tokenizer gives 12 ids"),
    (lambda m, f: (f / "vocabulary.json").unlink(), "vocabulary.json: is missing"),
    (lambda m, f: np.savez(f / "kept_rows.npz", ids=np.array([1, 1]), vectors=np.zeros((2, 8))), "repeated"),
    (lambda m, f: np.savez(f / "kept_rows.npz", ids=np.array([1]), vectors=np.zeros((1, 5))), "vectors (k, 8)"),
    (lambda m, f: m.update(kind="baseline"), "is a baseline model with a tokenizer spec"),
])
def test_a_damaged_externalized_folder_is_refused_with_one_line(mixed, tmp_path, change, message):
    root, store, _ = mixed
    folder = _copy_and_change(root, tmp_path, "tv_mask", change)
    with pytest.raises(InputError) as raised:
        Predictor(store, folder)
    assert message in str(raised.value) and len(str(raised.value).splitlines()) == 1


def test_the_predict_command_checks_externalized_folders_without_tensorflow(mixed, tmp_path):
    """The server's parent checks every folder before starting its workers, TensorFlow not loaded."""
    import subprocess
    import sys

    from conftest import ROOT

    root, store, _ = mixed
    folder = _copy_and_change(root, tmp_path, "k2_pre", lambda m, f: np.save(f / "rows.npy", np.full(30, 10**6)))
    code = ("import sys; from external_embeddings.cli import _check_models; from external_embeddings import "
            "EmbeddingStore, InputError\ntry: _check_models(EmbeddingStore.open(sys.argv[1]), sys.argv[2])\n"
            "except InputError as e: print(e)\nprint('tensorflow' in sys.modules)")
    good = subprocess.run([sys.executable, "-c", code, str(store.path), str(root)], capture_output=True, text=True,
                          cwd=ROOT)
    bad = subprocess.run([sys.executable, "-c", code, str(store.path), str(folder)], capture_output=True, text=True,
                         cwd=ROOT)
    assert good.stdout.splitlines() == ["False"], good.stderr
    assert "rows.npy: holds store ids outside" in bad.stdout and bad.stdout.splitlines()[-1] == "False"


def test_an_externalized_group_keeps_to_the_stores_memory_budget(mixed):
    from external_embeddings import EmbeddingStore, MemoryBudgetError

    root, store, _ = mixed
    small = EmbeddingStore.open(store.path, max_bytes=4 * 12 * store.dim * 3)  # three texts of 12 vectors
    predictor = Predictor(small, root / "tv_mask")
    assert len(predictor.predict(["orbit"] * 3)) == 3
    with pytest.raises(MemoryBudgetError, match=r"refusing to build a \(4, 12, 8\) float32 array"):
        predictor.predict(["orbit"] * 4)
