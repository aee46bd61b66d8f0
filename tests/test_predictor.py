"""K external models served from one store and one mapping, in Python and from the command line."""

import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT, vector_rows, write_vectors
from external_embeddings import InputError, tokenizer
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
    predictor = Predictor(store, work / "baseline")
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
