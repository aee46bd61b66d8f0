"""externalize: models people already have (keras-io's end-to-end string model saved as .keras, a
tf.keras LSTM/GRU saved as .h5 with its Tokenizer's JSON) become external models that predict,
through the Predictor, what the originals predict; bad input is one clear line and no folder."""

import json

import numpy as np
import pytest

from conftest import DIM, real_posts
from external_embeddings.cli import main
from external_embeddings.predictor import Predictor
from external_embeddings.store import EmbeddingStore, write_store
from externalize_models import NO_VECTOR, WORDS, corpus, keras2_models, keras2_spec, keras_io_model

# Words with zero rows (NO_VECTOR) in masked and unmasked places, unknown words, empty texts and
# texts longer than every sequence length, with capitals and punctuation; then real 20 Newsgroups
# posts from across the groups, which the originals never saw.
TEXTS = ["The rocket reached orbit around the moon.", "zorblax quuxify florp", "zorblax the doctor florp",
         "", "unheardof words only", "NASA, launch!  Star; planet?", " ".join(WORDS * 3),
         " ".join(NO_VECTOR * 9 + ["goal"]), "goal " + " ".join(NO_VECTOR), "glimmix"] + corpus(12, seed=5) \
    + real_posts(20, every=500)


def keras_io_predictions(path, texts):
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(path)
    return np.asarray(model.predict(tf.constant(texts)[:, None], verbose=0), dtype=np.float64)


def keras2_predictions(model_path, tokenizer_path, texts, maxlen, padding="pre", truncating="pre"):
    """The original as its author runs it: tf-keras, its Tokenizer and pad_sequences."""
    import tf_keras

    model = tf_keras.models.load_model(model_path)
    tokenizer = tf_keras.preprocessing.text.tokenizer_from_json(tokenizer_path.read_text())
    ids = tf_keras.utils.pad_sequences(tokenizer.texts_to_sequences(texts), maxlen=maxlen, padding=padding,
                                       truncating=truncating)
    return np.asarray(model.predict(ids, verbose=0), dtype=np.float64)


def predictor_probabilities(store, folder, texts, runtime="keras"):
    results = Predictor(store, folder, runtime=runtime).predict(texts)
    name = folder.resolve().name
    labels = json.loads((folder / "manifest.json").read_text())["labels"]
    return np.array([[r[name]["probabilities"][label] for label in labels] for r in results])


def externalize(capsys, *argv):
    main(["externalize", *map(str, argv)])
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("externalize")


@pytest.fixture(scope="module")
def keras_io(work):
    return keras_io_model(work / "keras_io.keras")


@pytest.fixture(scope="module")
def keras2_originals(work):
    """The LSTM (pre padding), the GRU (post padding, 30 words, an OOV token, a padding row that
    is not zero) and the LSTM's twin (a GRU of the same Tokenizer and maxlen), made by tf-keras in
    one subprocess."""
    return keras2_models(keras2_spec(work / "lstm", rnn="LSTM", maxlen=15),
                         keras2_spec(work / "gru", rnn="GRU", maxlen=12, num_words=30, oov_token="<OOV>",
                                     padding_row=True),
                         keras2_spec(work / "twin", rnn="GRU", maxlen=15, seed=7))


@pytest.fixture(scope="module")
def keras2_lstm(keras2_originals):
    return keras2_originals[0]


def test_keras_io_model_predicts_as_before(store, keras_io, work, capsys):
    out = externalize(capsys, keras_io, "--store", store.path, "--output", work / "kio")
    assert "max difference" in out and "saved" in out
    manifest = json.loads((work / "kio/manifest.json").read_text())
    assert manifest["kind"] == "external" and manifest["tokenizer"]["kind"] == "text_vectorization"
    assert manifest["mask"] is False and manifest["kept_rows"] is None and manifest["labels"] == ["0", "1", "2"]
    assert manifest["source"]["file"] == "keras_io.keras" and len(manifest["source"]["sha256"]) == 64
    assert manifest["store"]["fingerprint"] == store.fingerprint
    rows = np.load(work / "kio" / manifest["rows"])
    assert manifest["externalized"]["zero"] >= len(NO_VECTOR) and rows.max() <= store.count
    expected = keras_io_predictions(keras_io, TEXTS)
    np.testing.assert_allclose(predictor_probabilities(store, work / "kio", TEXTS), expected, atol=1e-5)
    assert manifest["onnx"]["file"] == "model.onnx"  # exported at externalize time, and served the same
    np.testing.assert_allclose(predictor_probabilities(store, work / "kio", TEXTS, "onnx"), expected, atol=1e-5)


@pytest.fixture(scope="module")
def lstm_external(store, keras2_lstm, work):
    from external_embeddings.models.externalize import externalize as run

    labels = work / "labels.txt"
    labels.write_text("space\nsport\nmedicine\n")
    model, tokenizer = keras2_lstm
    run(model, store, work / "lstm_ext", tokenizer=tokenizer, maxlen=15, labels=labels)
    return work / "lstm_ext"


def test_keras2_lstm_with_a_mask_predicts_as_before(store, keras2_lstm, lstm_external, capsys):
    manifest = json.loads((lstm_external / "manifest.json").read_text())
    assert manifest["mask"] is True and manifest["tokenizer"]["kind"] == "keras2"
    assert manifest["labels"] == ["space", "sport", "medicine"] and manifest["externalized"]["framework"] == "tf_keras"
    expected = keras2_predictions(*keras2_lstm, TEXTS, 15)
    np.testing.assert_allclose(predictor_probabilities(store, lstm_external, TEXTS), expected, atol=1e-5)
    assert manifest["onnx"]["file"] == "model.onnx"  # the LSTM with its mask input, on ONNX Runtime too
    np.testing.assert_allclose(predictor_probabilities(store, lstm_external, TEXTS, "onnx"), expected, atol=1e-5)


def test_the_mask_comes_from_the_ids_not_from_zero_vectors(store, keras2_lstm, lstm_external):
    """A mask made from the vectors would hide the words without a vector: the predictions would move."""
    import keras

    from external_embeddings.text.specs import load_tokenizer

    model = keras.saving.load_model(lstm_external / "model.keras", safe_mode=True)
    manifest = json.loads((lstm_external / "manifest.json").read_text())
    ids = load_tokenizer(lstm_external, manifest["tokenizer"]).ids(TEXTS)
    vectors = store.gather(np.load(lstm_external / "rows.npy")[ids])
    by_ids = model.predict({"vectors": vectors, "mask": ids != 0}, verbose=0)
    by_vectors = model.predict({"vectors": vectors, "mask": vectors.any(axis=-1)}, verbose=0)
    np.testing.assert_allclose(by_ids, keras2_predictions(*keras2_lstm, TEXTS, 15), atol=1e-5)
    assert np.abs(by_ids - by_vectors).max() > 1e-3


def test_models_that_take_the_same_input_run_as_one_call(store, keras2_originals, lstm_external, work):
    """Two masked models of one Tokenizer, length and padding (an LSTM and a GRU) take the very
    same input: the Predictor runs them as one fused Keras call, each answering as its original."""
    import shutil

    from external_embeddings.models.externalize import externalize as run

    keras2_lstm, _, (gru, tokenizer) = keras2_originals
    folder = work / "twins"
    shutil.copytree(lstm_external, folder / "lstm")
    run(gru, store, folder / "gru", tokenizer=tokenizer, maxlen=15)
    predictor = Predictor(store, folder)
    ((runner, names),) = [part for parts in predictor._runners.values() for part in parts]
    assert sorted(names) == ["gru", "lstm"] and runner.fused is not None
    calls = []
    fused_call = runner.fused.predict_on_batch
    runner.fused.predict_on_batch = lambda x: calls.append(len(x)) or fused_call(x)
    results = predictor.predict(TEXTS)
    assert calls == [2]  # one call, the vectors and the mask
    alone = predictor.predict(TEXTS, models=["gru"])  # a request for one model runs it alone
    assert calls == [2]
    for name, original in (("lstm", keras2_predictions(*keras2_lstm, TEXTS, 15)),
                           ("gru", keras2_predictions(gru, tokenizer, TEXTS, 15))):
        labels = json.loads((folder / name / "manifest.json").read_text())["labels"]
        got = np.array([[r[name]["probabilities"][label] for label in labels] for r in results])
        np.testing.assert_allclose(got, original, atol=1e-5, err_msg=name)
    assert [r["gru"]["probabilities"] for r in alone] == pytest.approx([r["gru"]["probabilities"] for r in results],
                                                                      abs=1e-6)


def test_keras2_gru_post_padding_with_a_kept_padding_row(store, keras2_originals, work, capsys):
    """Post padding and truncation; a padding row that is not zero differs from any store: kept."""
    model, tokenizer = keras2_originals[1]
    args = [model, "--store", store.path, "--tokenizer", tokenizer, "--maxlen", 12, "--padding", "post",
            "--truncating", "post"]
    with pytest.raises(SystemExit):
        externalize(capsys, *args, "--output", work / "gru_ext")
    assert "'(padding)': not in the store" in capsys.readouterr().err and not (work / "gru_ext").exists()
    out = externalize(capsys, *args, "--output", work / "gru_ext", "--keep-rows")
    assert "1 kept beside it" in out
    kept = np.load(work / "gru_ext/kept_rows.npz")
    assert kept["ids"].tolist() == [0] and np.allclose(kept["vectors"], 0.25)
    expected = keras2_predictions(model, tokenizer, TEXTS, 12, "post", "post")
    np.testing.assert_allclose(predictor_probabilities(store, work / "gru_ext", TEXTS), expected, atol=1e-5)


def test_rows_unlike_the_store_are_refused_or_kept(store, work, capsys):
    vectors = {store.word(i): store.gather([i + 1])[0] for i in range(store.count)}
    vectors["orbit"] = vectors["orbit"] + 0.5  # "trained" rows
    vectors["the"] = vectors["the"] * 2
    path = keras_io_model(work / "trained.keras", vectors=vectors, seed=3)
    args = [path, "--store", store.path, "--output", work / "trained_ext"]
    with pytest.raises(SystemExit) as exit:
        externalize(capsys, *args)
    err = capsys.readouterr().err.strip()
    assert exit.value.code == 2 and len(err.splitlines()) == 1
    assert "2 of 34 non-zero rows differ" in err and "'orbit': max |diff| 0.5" in err and "'the': max |diff|" in err
    assert "give --keep-rows" in err
    assert not (work / "trained_ext").exists()
    out = externalize(capsys, *args, "--keep-rows")
    assert "2 kept beside it (" in out
    assert sorted(np.load(work / "trained_ext/kept_rows.npz")["ids"].tolist()) == sorted(
        json.loads((work / "trained_ext/vocabulary.json").read_text()).index(w) for w in ("orbit", "the"))
    np.testing.assert_allclose(predictor_probabilities(store, work / "trained_ext", TEXTS),
                               keras_io_predictions(path, TEXTS), atol=1e-5)


def _bad_models(work, store, keras2_lstm):
    """(name, arguments after the model, expected words in the error) for each kind of bad input."""
    import keras

    h5, tokenizer = keras2_lstm
    cases = {}

    def save(name, inputs, outputs, suffix=".keras"):
        keras.Model(inputs, outputs).save(work / f"{name}{suffix}")
        return work / f"{name}{suffix}"

    ids = keras.Input((10,), dtype="int32")
    cases["no_embedding"] = (save("no_embedding", ids, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Dense(4)(ids))), ["--tokenizer", tokenizer, "--maxlen", 10], "has 0 Embedding layers")
    cases["two_embeddings"] = (keras_io_model(work / "two.keras", second_embedding=True), [],
                               "has 2 Embedding layers")
    x = keras.layers.Embedding(40, DIM)(keras.layers.Reshape((10,))(ids))
    cases["not_fed_by_ids"] = (save("not_fed", ids, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling1D()(x))), ["--tokenizer", tokenizer, "--maxlen", 10],
        "not fed by the token ids (it takes the output of 'reshape")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(40, DIM)(ids))
    cases["not_a_classifier"] = (save("regression", ids, keras.layers.Dense(1)(x)),
                                 ["--tokenizer", tokenizer, "--maxlen", 10], "not a classifier")
    cases["two_outputs"] = (save("two_outputs", ids, [keras.layers.Dense(2, activation="softmax")(x),
                                                      keras.layers.Dense(3, activation="softmax")(x)]),
                            ["--tokenizer", tokenizer, "--maxlen", 10], "has 2 outputs")
    lam = keras.layers.Lambda(lambda t: t * 2)(x)
    cases["lambda_keras"] = (save("lambda", ids, keras.layers.Dense(3, activation="softmax")(lam)),
                             ["--tokenizer", tokenizer, "--maxlen", 10], "Lambda layer")
    cases["lambda_h5"] = (save("lambda", ids, keras.layers.Dense(3, activation="softmax")(lam), ".h5"),
                          ["--tokenizer", tokenizer, "--maxlen", 10], "Lambda layer")
    (work / "saved_model").mkdir(exist_ok=True)
    (work / "saved_model/saved_model.pb").write_bytes(b"\x08\x01")
    cases["saved_model"] = (work / "saved_model", [], "is a TensorFlow SavedModel")
    cases["pb_file"] = (work / "saved_model/saved_model.pb", [], "is a TensorFlow SavedModel")
    good = (work / "keras_io.keras").read_bytes()
    (work / "truncated.keras").write_bytes(good[:len(good) // 2])
    cases["truncated_keras"] = (work / "truncated.keras", [], "damaged or truncated")
    (work / "truncated.h5").write_bytes(h5.read_bytes()[:3000])
    cases["truncated_h5"] = (work / "truncated.h5", ["--tokenizer", tokenizer, "--maxlen", 15], "damaged or truncated")
    other = work / "dim4"
    if not other.exists():
        write_store(["the", "moon"], np.ones((2, 4), dtype=np.float32), other, {"file": "dim4"})
    cases["store_of_another_dim"] = (h5, ["--tokenizer", tokenizer, "--maxlen", 15, "--store-override", other],
                                     "holds vectors of dimension 4, but the model's Embedding has 8")
    config = json.loads(tokenizer.read_text())
    big_index = {**json.loads(config["config"]["word_index"]), **{f"extra{i}": 100 + i for i in range(50)}}
    config["config"]["word_index"] = json.dumps(big_index)
    (work / "big_tokenizer.json").write_text(json.dumps(config))
    cases["tokenizer_of_another_model"] = (h5, ["--tokenizer", work / "big_tokenizer.json", "--maxlen", 15],
                                           "it is not this model's tokenizer")
    config = json.loads(tokenizer.read_text())
    config["config"]["char_level"] = True
    (work / "char_tokenizer.json").write_text(json.dumps(config))
    cases["unsupported_tokenizer_setting"] = (h5, ["--tokenizer", work / "char_tokenizer.json", "--maxlen", 15],
                                              "char_level")
    cases["wrong_maxlen"] = (h5, ["--tokenizer", tokenizer, "--maxlen", 9], "give --maxlen 15")
    cases["ids_model_without_tokenizer"] = (h5, [], "give --tokenizer")
    cases["padding_for_a_text_vectorization"] = (work / "keras_io.keras", ["--maxlen", 20, "--padding", "post"],
                                                 "--maxlen, --padding given, but")
    (work / "exists").mkdir(exist_ok=True)
    cases["output_exists"] = (work / "keras_io.keras", ["--output-override", work / "exists"], "already exists")
    return cases


BAD = ["no_embedding", "two_embeddings", "not_fed_by_ids", "not_a_classifier", "two_outputs", "lambda_keras",
       "lambda_h5", "saved_model", "pb_file", "truncated_keras", "truncated_h5", "store_of_another_dim",
       "tokenizer_of_another_model", "unsupported_tokenizer_setting", "wrong_maxlen", "ids_model_without_tokenizer",
       "padding_for_a_text_vectorization", "output_exists"]


@pytest.fixture(scope="module")
def bad_models(work, store, keras_io, keras2_lstm):
    return _bad_models(work, store, keras2_lstm)


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_writes_nothing(case, bad_models, store, work, capsys):
    model, extra, expected = bad_models[case]
    extra = list(extra)
    store_path, output = store.path, work / f"out-{case}"
    for flag in ("--store-override", "--output-override"):
        if flag in extra:
            i = extra.index(flag)
            value = extra[i + 1]
            del extra[i:i + 2]
            store_path, output = (value, output) if flag == "--store-override" else (store_path, value)
    with pytest.raises(SystemExit) as exit:
        externalize(capsys, model, "--store", store_path, "--output", output, *extra)
    err = capsys.readouterr().err.strip()
    assert exit.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert expected in err
    if case != "output_exists":
        assert not output.exists()
    assert not list(work.glob(".out-*.partial-*"))


def test_a_float16_store_is_refused_at_the_check_when_it_moves_predictions(store, keras_io, work, capsys):
    """Rows within a float16 store's rounding match, but the check decides: nothing unless within 1e-5."""
    from external_embeddings.store.embedding_store import convert_store

    half = work / "half"
    if not half.exists():
        convert_store(store.path, half, "float16")
    try:
        out = externalize(capsys, keras_io, "--store", half, "--output", work / "kio16")
    except SystemExit:
        err = capsys.readouterr().err
        assert "differ by up to" in err and "float32" in err and not (work / "kio16").exists()
    else:  # the rounding did not move any probability by 1e-5: then it predicts as the original
        assert "max difference" in out
        np.testing.assert_allclose(predictor_probabilities(EmbeddingStore.open(half), work / "kio16", TEXTS),
                                   keras_io_predictions(keras_io, TEXTS), atol=1e-5)


def test_a_script_model_a_keras_io_model_and_a_keras2_model_served_at_once(served, keras_io, keras2_lstm, work):
    """One server, one store: each model answers over HTTP what its own original answers.

    The originals were filled from the exact vectors; the served store was converted from a
    text file of 6 decimals, so their rows match it within the tolerance, and the check proves
    that the predictions still do."""
    import shutil

    import httpx
    from test_server import serve, stop

    from external_embeddings.models.externalize import externalize as run

    script_work, store = served
    models = work / "served_models"
    shutil.copytree(script_work / "models" / "a", models / "script")
    run(keras_io, store, models / "keras_io")
    run(keras2_lstm[0], store, models / "keras2", tokenizer=keras2_lstm[1], maxlen=15)
    script = next(iter(Predictor(store, models / "script").predict(TEXTS[:1])[0]))
    expected = {f"script/{script}": [r[script]["probabilities"] for r in Predictor(store, models / "script").predict(TEXTS)],
                "keras_io": keras_io_predictions(keras_io, TEXTS), "keras2": keras2_predictions(*keras2_lstm, TEXTS, 15)}
    proc, url, ready = serve(store, models)
    try:
        assert "Serving 3 models" in ready
        results = httpx.post(f"{url}/v1/predict", json={"texts": TEXTS, "top_k": 3}, timeout=120).json()["results"]
    finally:
        stop(proc)
    assert len(results) == len(TEXTS)
    for name, want in expected.items():
        for i, result in enumerate(results):
            got = {t["label"]: t["probability"] for t in result["models"][name]["top_k"]}  # every label: 3 of 3
            want_i = want[i] if isinstance(want[i], dict) else {str(j): p for j, p in enumerate(want[i])}
            assert got.keys() == want_i.keys()
            np.testing.assert_allclose([got[k] for k in want_i], list(want_i.values()), atol=1e-5)


def test_benchmark_rows_state_each_goal():
    """bench_externalize's table: disk and memory against 90% of the embeddings, speed, equality."""
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "bench"))
    import bench_externalize

    mb = 1e6
    figures = {"models": 8, "texts": 512, "workers": 2, "embedding_bytes": 32 * mb, "original_bytes": 49 * mb,
               "external_bytes": 10 * mb, "store_bytes": 93 * mb, "max_diff": 0.0, "externalize_seconds": [20, 30],
               "pss_growth": {"original": 294 * mb, "external": 262 * mb},
               "seconds": {"original": [2.0, 3.0, 2.5], "external": [2.4, 2.6, 2.5]}}
    disk, disk_with_store, memory, speed, same, seconds = bench_externalize.rows(figures)
    assert disk["verdict"] == "met" and "saved 39.00 MB = 122%" in disk["note"]
    assert disk_with_store["verdict"] == "n/a" and "from 19 models" in disk_with_store["note"]
    assert memory["verdict"] == "MISSED" and "= 50%" in memory["note"]
    assert speed["verdict"] == "met" and speed["ratio"] == "1.00x"
    assert same["verdict"] == "met" and seconds["external"] == "25.0 s"
    # The ratio pairs each side's pass r (run back to back), not the two medians (here 1.00x).
    figures["seconds"] = {"original": [1.0, 4.0, 2.0], "external": [2.0, 2.0, 1.5]}
    speed = bench_externalize.rows(figures)[3]
    assert speed["ratio"] == "1.33x" and speed["original"] == speed["external"] == "256"


def test_a_keras3_sequential_with_a_bidirectional_rnn_and_one_sigmoid(store, keras2_lstm, work, capsys):
    """A Keras 3 Sequential on token ids (Embedding with mask_zero, Bidirectional GRU, one sigmoid
    output) with a Keras 2 tokenizer: the wrapper and the mask survive the rebuild."""
    import keras
    import tf_keras

    from externalize_models import embedding_matrix

    _, tokenizer_file = keras2_lstm
    word_index = json.loads(json.loads(tokenizer_file.read_text())["config"]["word_index"])
    matrix = embedding_matrix(((i, w) for w, i in word_index.items()), len(word_index) + 1)
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((15,), dtype="int32"),
                              keras.layers.Embedding(len(matrix), DIM, mask_zero=True, trainable=False),
                              keras.layers.Bidirectional(keras.layers.GRU(6)),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.layers[0].set_weights([matrix])
    model.save(work / "sequential.keras")
    out = externalize(capsys, work / "sequential.keras", "--store", store.path, "--output", work / "sequential_ext",
                      "--tokenizer", tokenizer_file, "--maxlen", 15)
    assert "max difference" in out
    tokenizer = tf_keras.preprocessing.text.tokenizer_from_json(tokenizer_file.read_text())
    ids = tf_keras.utils.pad_sequences(tokenizer.texts_to_sequences(TEXTS), maxlen=15)
    expected = np.asarray(keras.saving.load_model(work / "sequential.keras").predict(ids, verbose=0), dtype=np.float64)
    np.testing.assert_allclose(predictor_probabilities(store, work / "sequential_ext", TEXTS), expected, atol=1e-5)


def test_rows_mostly_unlike_the_store_point_at_the_store_not_at_keep_rows():
    from types import SimpleNamespace

    from external_embeddings.models.embedding_rows import describe_differences

    few = SimpleNamespace(from_store=98, kept_ids=[3, 4], examples=[("orbit", 0.5)])
    most = SimpleNamespace(from_store=2, kept_ids=list(range(98)), examples=[("orbit", 0.5)])
    assert describe_differences(few, "S").endswith("this embedding was trained or comes from other vectors")
    assert "98 of 100 non-zero rows differ from S" in describe_differences(most, "S")
    assert describe_differences(most, "S").endswith("give the store of the vectors it was filled from")
