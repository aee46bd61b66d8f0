"""K external models served from one store and one mapping, in Python and from the command line."""

import json
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT, vector_rows, write_vectors
from external_embeddings import InputError
from external_embeddings.text import tokenizer
from external_embeddings.predictor import Predictor

TEXTS = ["The rocket reached orbit around the moon.", "The doctor saw a patient with a virus.",
         "The pitcher threw in the ninth inning\nand the team won."]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "external_embeddings", "predict", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def test_predictor_runs_every_model_on_one_mapping(served, monkeypatch):
    work, store = served
    predictor = Predictor(store, work / "models")
    names = ["a/pretrained_external_word_embeddings", "b/pretrained_external_word_embeddings"]
    assert sorted(predictor.models) == names
    calls = []
    gather = store.gather
    monkeypatch.setattr(store, "gather", lambda ids: calls.append(ids.shape) or gather(ids))
    results = predictor.predict(TEXTS)
    assert calls == [(len(TEXTS), 170)]  # one mapping, at the longest length
    monkeypatch.undo()
    tokens = [tokenizer.tokenize(t) for t in TEXTS]
    for name, length in zip(names, (150, 170)):
        model, manifest, _ = predictor.models[name]
        direct = keras.ops.convert_to_numpy(model(store.batch(tokens, length)))
        for i, result in enumerate(results):
            r = result[name]
            assert r["label"] == manifest["labels"][int(np.argmax(direct[i]))]
            assert r["probability"] == pytest.approx(float(direct[i].max()), abs=1e-5)
            assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_predict_command_prints_json_per_text_from_a_file(served, tmp_path):
    work, store = served
    (tmp_path / "texts.txt").write_text("\n".join(t.replace("\n", "\\n") for t in TEXTS) + "\n")
    done = run_cli("--store", store.path, "--models", work / "models", "--json", "--file", tmp_path / "texts.txt")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["text"] for line in lines] == TEXTS  # the literal \n became a newline again
    assert [line["line"] for line in lines] == [1, 2, 3]
    for line in lines:
        assert set(line["models"]) == {"a/pretrained_external_word_embeddings", "b/pretrained_external_word_embeddings"}
        for answer in line["models"].values():
            assert answer["label"] in ("rec.space", "rec.sport", "sci.med") and 0 < answer["probability"] <= 1


def test_predict_command_prints_labels_for_text_arguments(served):
    work, store = served
    done = run_cli("--store", store.path, "--models", work / "models" / "a", "orbit rocket moon")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "orbit rocket moon"
    assert done.stdout.splitlines()[1].startswith("  pretrained_external_word_embeddings: ")


def test_the_keras_runtime_starts_quietly_and_sets_both_thread_pools():
    """No line of TensorFlow's C++ log once the runtime is made, though models then run (without
    a GPU, finding the devices logged "E0000 ... failed call to cuInit"), nor its retracing warning;
    and listing the devices inside the hidden log must not start TensorFlow before its threads are set."""
    code = ("from external_embeddings.runtime.keras_runtime import KerasRuntime; KerasRuntime(3); "
            "import keras, numpy as np, tensorflow as tf; "
            "[keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).predict_on_batch(np.ones((1, 4))) "
            "for _ in range(7)]; "
            "t = tf.config.threading; print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads())")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split() == ["3", "3"], done.stderr[-2000:]
    assert not re.search(r"^[IWEF]\d{4} ", done.stderr, re.MULTILINE), done.stderr
    # Seven models each tracing once is not a function retraced in a loop: no warning says it is.
    assert "retracing" not in done.stderr, done.stderr


def test_predict_command_serves_a_baseline_model_beside_external_ones(served, tmp_path):
    work, store = served
    mixed = tmp_path / "mixed"
    shutil.copytree(work / "models" / "a", mixed / "a")
    shutil.copytree(work / "baseline", mixed / "base")
    done = run_cli("--store", store.path, "--models", mixed, "--json", "orbit rocket moon launch")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)["models"]
    assert set(answer) == {"a/pretrained_external_word_embeddings", "base/pretrained_word_embeddings"}
    assert answer["base/pretrained_word_embeddings"]["known_words"] == 4


def test_predictor_runs_a_baseline_on_its_own_word_index(served):
    work, store = served
    predictor = Predictor(store, work / "baseline", runtime="keras")  # compared with the Keras model's weights
    (name, (model, manifest, word_index)), = predictor.models.items()
    assert manifest["kind"] == "baseline" and predictor.groups == {("baseline", name): [name]}
    results = predictor.predict(TEXTS)
    ids = tokenizer.pad([tokenizer.to_ids(tokenizer.tokenize(t), word_index) for t in TEXTS], 150)
    direct = keras.ops.convert_to_numpy(model(ids))
    for i, result in enumerate(results):
        assert result[name]["label"] == manifest["labels"][int(np.argmax(direct[i]))]
        assert result[name]["probability"] == pytest.approx(float(direct[i].max()), abs=1e-5)
    assert predictor.describe()[name]["kind"] == "baseline"
    # Its embedding is in its parameters: 4 bytes per weight, more than the CNN alone.
    assert predictor.describe()[name]["parameter_bytes"] == sum(int(np.prod(w.shape)) * 4 for w in model.weights)


def test_predictor_picks_models_and_gives_the_top_k_labels(served):
    work, store = served
    predictor = Predictor(store, work / "models")
    name = "b/pretrained_external_word_embeddings"
    results = predictor.predict(TEXTS, models=[name], top_k=2)
    full = predictor.predict(TEXTS)
    for result, everything in zip(results, full):
        assert list(result) == [name]
        best = sorted(everything[name]["probabilities"].items(), key=lambda item: -item[1])[:2]
        assert [(t["label"], t["probability"]) for t in result[name]["top_k"]] == best
        assert result[name]["label"] == everything[name]["label"]
    with pytest.raises(InputError, match="names no model 'nope'"):
        predictor.predict(TEXTS, models=["nope"])
    with pytest.raises(InputError, match="top_k: must be a whole number"):
        predictor.predict(TEXTS, top_k=0)
    with pytest.raises(InputError, match="not valid UTF-8"):
        predictor.predict(["ok", "\ud800"])


def test_predict_command_refuses_a_model_from_another_store(served, tmp_path):
    work, store = served
    other = write_vectors(tmp_path / "other.txt", vector_rows(seed=5))
    subprocess.run([sys.executable, "-m", "external_embeddings", "convert", str(other), str(tmp_path / "other"),
                    "--quiet"], check=True, cwd=ROOT)
    done = run_cli("--store", tmp_path / "other", "--models", work / "models", "orbit")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith("error: ")
    assert str(store.path) in message and str(tmp_path / "other") in message and store.fingerprint[:12] in message


def test_a_model_with_the_baselines_vocabulary_is_served_with_it(served, tmp_path):
    """A --STORE_VOCABULARY=false model drops the store words it never knew, as in training."""
    work, store = served
    run = work / "restricted" / "pretrained_external_word_embeddings"
    manifest = json.loads((run / "manifest.json").read_text())
    vocabulary = json.loads((run / manifest["vocabulary"]).read_text())
    assert manifest["vocabulary"] == "vocabulary.json" and len(vocabulary) == 9
    outside = [word for word, _ in vector_rows() if word not in vocabulary]
    text = " ".join(outside[:6] + [word for word in vocabulary if store.ids([word])[0]][:3])
    # Both kinds in one predictor: one mapping per vocabulary.
    shutil.copytree(work / "models" / "a", tmp_path / "mixed" / "a")
    shutil.copytree(work / "restricted", tmp_path / "mixed" / "restricted")
    predictor = Predictor(store, tmp_path / "mixed")
    result = predictor.predict([text])[0]
    tokens = [tokenizer.tokenize(text)]
    for name, vocab, known in (("restricted/pretrained_external_word_embeddings", vocabulary, 3),
                               ("a/pretrained_external_word_embeddings", None, 9)):
        model = predictor.models[name][0]
        expected = keras.ops.convert_to_numpy(model(store.batch(tokens, 150, vocabulary=vocab)))[0]
        assert result[name]["probabilities"] == pytest.approx(dict(zip(manifest["labels"], expected)), abs=1e-5)
        assert result[name]["known_words"] == known
    whole_store = keras.ops.convert_to_numpy(predictor.models["restricted/pretrained_external_word_embeddings"][0](
        store.batch(tokens, 150)))[0]
    assert not np.allclose(list(result["restricted/pretrained_external_word_embeddings"]["probabilities"].values()),
                           whole_store, atol=1e-4)  # the store's mapping would have fed it other inputs


def test_hidden_folders_left_by_saves_are_not_served(served, tmp_path, monkeypatch):
    work, store = served
    shutil.copytree(work / "models", tmp_path / "models")
    run = tmp_path / "models" / "a" / "pretrained_external_word_embeddings"
    shutil.copytree(run, run.parent / ".pretrained_external_word_embeddings.old-123")
    (run.parent / ".pretrained_external_word_embeddings.partial-x").mkdir()
    (run.parent / ".pretrained_external_word_embeddings.partial-x" / "model.keras").write_bytes(b"half")
    assert sorted(Predictor(store, tmp_path / "models").models) == [
        "a/pretrained_external_word_embeddings", "b/pretrained_external_word_embeddings"]
    monkeypatch.chdir(run)
    assert list(Predictor(store, ".").models) == ["pretrained_external_word_embeddings"]  # not ""


def test_a_models_folder_of_links_serves_every_linked_model(served, tmp_path):
    """Users pick versions with links; rglob skipped them and served fewer models without a word."""
    from external_embeddings.predictor import find_model_dirs

    work, store = served
    shutil.copytree(work / "models", tmp_path / "versions")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "current").symlink_to(tmp_path / "versions" / "a")
    (tmp_path / "models" / "previous").symlink_to(tmp_path / "versions" / "b")
    (tmp_path / "models" / "pinned").symlink_to(tmp_path / "versions" / "a")  # two names for one folder: both
    predictor = Predictor(store, tmp_path / "models")
    assert sorted(predictor.models) == [f"{name}/pretrained_external_word_embeddings"
                                        for name in ("current", "pinned", "previous")]
    assert predictor.predict(TEXTS)[0]["current/pretrained_external_word_embeddings"] == \
        Predictor(store, work / "models").predict(TEXTS)[0]["a/pretrained_external_word_embeddings"]
    (tmp_path / "versions" / "b" / "up").symlink_to(tmp_path / "models")  # previous/up/previous/up/...
    with pytest.raises(InputError) as raised:
        find_model_dirs(tmp_path / "models")
    assert str(raised.value).startswith(f"{tmp_path / 'models' / 'previous' / 'up'}: links to {tmp_path / 'models'}, "
                                        "a folder above it")


def test_known_words_tell_an_answer_built_on_nothing(served):
    """The example's CNN never sees the last position: one word gets the empty text's answer."""
    work, store = served
    predictor = Predictor(store, work / "models" / "a")
    empty, unknown, one, two = (r["pretrained_external_word_embeddings"] for r in predictor.predict(
        ["", "zorblax quuxify!", "orbit", "orbit rocket"]))
    assert [r["known_words"] for r in (empty, unknown, one, two)] == [0, 0, 1, 2]
    assert unknown["probabilities"] == empty["probabilities"] == one["probabilities"]
    assert two["probabilities"] != one["probabilities"]
    done = run_cli("--store", store.path, "--models", work / "models" / "a", "zorblax", "orbit rocket")
    assert done.returncode == 0, done.stderr
    assert "0 known words (no known word: the answer for an empty text)" in done.stdout
    assert "2 known words" in done.stdout


def test_a_baseline_word_without_a_vector_is_not_a_known_word(served):
    """A word in the baseline's index whose vector was missing (a zero Embedding row) feeds the
    model nothing: it is not counted, and a text of only such words is flagged like an empty one."""
    from external_embeddings.predictor import embedding_matrix

    work, store = served
    predictor = Predictor(store, work / "baseline", runtime="keras")  # embedding_matrix reads a Keras model
    (name, (model, _, word_index)), = predictor.models.items()
    rows = embedding_matrix(model)
    missing = [w for w, i in word_index.items() if not rows[i].any()]
    present = [w for w, i in word_index.items() if rows[i].any()]
    assert missing and present, "the fixture's baseline should index words with and without vectors"
    empty, blank, mixed = (r[name] for r in predictor.predict(["", " ".join(missing[:3]), f"{missing[0]} {present[0]}"]))
    assert [r["known_words"] for r in (empty, blank, mixed)] == [0, 0, 1]
    assert blank["probabilities"] == empty["probabilities"]


def test_predictor_streams_texts_batch_by_batch(served, monkeypatch):
    from external_embeddings import predictor as predictor_module

    work, store = served
    monkeypatch.setattr(predictor_module, "BATCH_TEXTS", 4)
    predictor = Predictor(store, work / "models" / "a")
    consumed = []

    def texts():
        for i in range(40):
            consumed.append(i)
            yield f"orbit {i}"

    results = predictor.stream(texts())
    next(results)
    assert len(consumed) == 4  # one batch read, not the whole input
    assert len(list(results)) == 39 and len(consumed) == 40


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("sequence_length"), "has no valid sequence_length (got None)"),
    (lambda m: m.update(sequence_length=170), "takes inputs of shape (150, 8), but its manifest says external input of shape (170, 8)"),
    (lambda m: m.update(labels=m["labels"][:2]), "has 3 outputs but its manifest names 2 labels"),
    (lambda m: m.update(vocabulary="../../etc/passwd"), "names no vocabulary"),
    (lambda m: m.pop("vocabulary"), "names no vocabulary (got None): it was saved by an older version"),
])
def test_a_manifest_that_disagrees_with_its_model_is_refused(served, tmp_path, change, message):
    work, store = served
    shutil.copytree(work / "models" / "a", tmp_path / "a")
    path = tmp_path / "a" / "pretrained_external_word_embeddings" / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(InputError) as raised:
        Predictor(store, tmp_path / "a")
    assert str(raised.value).startswith(f"{path}: {message}")


def test_a_damaged_model_file_is_named_damaged(served, tmp_path):
    work, store = served
    shutil.copytree(work / "models" / "a", tmp_path / "a")
    (tmp_path / "a" / "pretrained_external_word_embeddings" / "model.keras").write_bytes(b"PK not really")
    done = run_cli("--store", store.path, "--models", tmp_path / "a", "orbit")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "model.keras: is damaged (not a .keras zip archive)" in done.stderr and "not found" not in done.stderr


def test_predict_command_errors_are_one_line(served, tmp_path):
    work, store = served
    folder = run_cli("--store", store.path, "--models", work / "models", "--file", tmp_path)
    surrogate = subprocess.run([sys.executable.encode(), b"-m", b"external_embeddings", b"predict", b"--store",
                                bytes(store.path), b"--models", bytes(work / "models"), b"ok", b"caf\xe9"],
                               capture_output=True, text=True, cwd=ROOT)
    mistyped = run_cli("--store", str(store.path) + "x", "--models", work / "models", "orbit")
    no_models = run_cli("--store", store.path, "--models", work / "modelz", "orbit")
    for done, message in ((folder, f"error: {tmp_path}: is not a file"),
                          (no_models, f"error: {work / 'modelz'}: does not exist; give the folder holding"),
                          (surrogate, "error: command line: text 2: is not valid UTF-8"),
                          (mistyped, f"error: {store.path}x: does not exist; check the path")):
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(message)
    assert "remove" not in mistyped.stderr


def test_predict_command_stops_quietly_when_the_reader_stops(served, tmp_path):
    work, store = served
    (tmp_path / "many.txt").write_text("the rocket reached orbit\n" * 3000)
    reader = subprocess.Popen([sys.executable, "-m", "external_embeddings", "predict", "--store", str(store.path),
                               "--models", str(work / "models"), "--json", "--file", str(tmp_path / "many.txt")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    first = reader.stdout.readline()
    reader.stdout.close()  # as `| head -1` does
    stderr = reader.stderr.read().decode()
    reader.wait(timeout=120)
    assert json.loads(first)["line"] == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
