"""Both scripts end to end through main(), on the tiny fixtures, as Hugging Face tests its examples."""

import contextlib
import io
import json
import subprocess
import sys
from unittest import mock

import keras
import numpy as np
import pytest

import pretrained_external_word_embeddings as external
import pretrained_word_embeddings as baseline
from conftest import DIM, ROOT, write_corpus
from external_embeddings.text import tokenizer
from external_embeddings.store import EmbeddingStore

SCRIPTS = {"pretrained_word_embeddings": baseline, "pretrained_external_word_embeddings": external}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, vectors_file):
    """Run the baseline, then the external script, into one OUTPUT_DIR; keep what each printed.

    The corpus is big enough (40 posts a topic) and the training long enough (3 epochs) that
    both models learn its three topics: a few seconds each.
    """
    work = tmp_path_factory.mktemp("runs")
    corpus_dir = write_corpus(work / "corpus", docs_per_topic=40)
    argv = [f"--VECTORS={vectors_file}", f"--TEXT_DATA_DIR={corpus_dir}", f"--CACHE_DIR={work / 'cache'}",
            f"--OUTPUT_DIR={work / 'output'}", "--EPOCHS=3", "--BATCH_SIZE=8", "--MAX_SEQUENCE_LENGTH=150",
            "--MAX_NUM_WORDS=100", "--VALIDATION_SPLIT=0.25", "--CORPUS_URL="]
    printed = {}
    for name, script in SCRIPTS.items():
        out = io.StringIO()
        with mock.patch.object(sys, "argv", [f"{name}.py"] + argv), contextlib.redirect_stdout(out):
            script.main()
        printed[name] = out.getvalue()
    return work / "output", printed


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_writes_model_manifest_and_metrics(runs, name):
    output, printed = runs
    run = output / name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val_accuracy"] >= 0.9  # chance is 1/3: the topics were learned
    assert metrics["test_accuracy"] is None  # the fixture corpus has no test split
    assert metrics["train_seconds"] > 0 and metrics["train_samples_per_second"] > 0
    assert metrics["peak_rss_bytes"] > 50e6
    on_disk = {p.name: p.stat().st_size for p in run.iterdir() if p.name != "metrics.json"}
    assert metrics["artifacts"] == on_disk
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["labels"] == ["rec.space", "rec.sport", "sci.med"]
    assert manifest["sequence_length"] == 150 and manifest["tokenizer"] == tokenizer.SETTINGS
    assert "validation accuracy" in printed[name] and "saved in all" in printed[name]


def test_second_script_prints_both_runs_side_by_side(runs):
    output, printed = runs
    table = printed["pretrained_external_word_embeddings"].split("Results")[1].splitlines()
    assert table[1].split() == ["word_embeddings", "external_word_embeddings"]  # the column headers
    metrics = {n: json.loads((output / n / "metrics.json").read_text()) for n in SCRIPTS}
    row = next(line for line in table if line.startswith("validation accuracy")).split()[-2:]
    assert row == [f"{metrics[n]['val_accuracy']:.4f}" for n in SCRIPTS]
    best = next(line for line in table if line.strip().startswith("best epoch's")).split("best epoch's")[1]
    assert best.split() == [w for n in SCRIPTS for w in
                            (f"{metrics[n]['best_val_accuracy']:.4f}", "(epoch", f"{metrics[n]['best_epoch']})")]
    sizes = next(line for line in table if line.strip().startswith("word_index.json")).split()
    assert sizes[1:] == [f"{metrics['pretrained_word_embeddings']['artifacts']['word_index.json'] / 1e6:,.2f}", "MB",
                         "-"]  # the baseline's file, shown from its metrics.json; the external run has none


def test_a_damaged_or_older_metrics_file_of_the_other_run_costs_nothing(runs, tmp_path, capsys):
    from external_embeddings.models.results import report

    output, _ = runs
    metrics = json.loads((output / "pretrained_external_word_embeddings" / "metrics.json").read_text())
    for other, shown in (("{not json", "cannot be read"), ('{"val_accuracy": 0.5}', "0.5000"), ("[1, 2]", "is not")):
        (tmp_path / "pretrained_word_embeddings").mkdir(exist_ok=True)
        (tmp_path / "pretrained_word_embeddings" / "metrics.json").write_text(other)
        report(tmp_path / "pretrained_external_word_embeddings", metrics)
        printed = capsys.readouterr().out
        assert f"{metrics['val_accuracy']:.4f}" in printed and shown in printed


def test_runs_that_differ_in_epochs_or_data_are_flagged_beside_each_other(runs, tmp_path, capsys):
    from external_embeddings.models.results import report

    output, printed = runs
    assert "Not like for like" not in printed["pretrained_external_word_embeddings"]  # the same settings
    metrics = json.loads((output / "pretrained_external_word_embeddings" / "metrics.json").read_text())
    other = {**json.loads((output / "pretrained_word_embeddings" / "metrics.json").read_text()),
             "epochs": metrics["epochs"] + 1}
    (tmp_path / "pretrained_word_embeddings").mkdir()
    (tmp_path / "pretrained_word_embeddings" / "metrics.json").write_text(json.dumps(other))
    report(tmp_path / "pretrained_external_word_embeddings", metrics)
    epochs = metrics["epochs"]
    assert f"Not like for like: the runs differ in epochs ({epochs} vs {epochs + 1})." in capsys.readouterr().out


def test_stage_lines_report_counts(runs):
    _, printed = runs
    assert "Loaded 34 word vectors of dimension 8" in printed["pretrained_word_embeddings"]
    assert "Loaded 120 documents in 3 categories" in printed["pretrained_word_embeddings"]
    assert "34 words found, 2 missing." in printed["pretrained_word_embeddings"]  # zorblax, quuxify
    assert "34 of the corpus's words found in the store of 34 words" in printed["pretrained_external_word_embeddings"]


def test_baseline_embedding_is_frozen_and_external_model_has_none(runs):
    output, _ = runs
    base = keras.saving.load_model(output / "pretrained_word_embeddings" / "model.keras")
    ext = keras.saving.load_model(output / "pretrained_external_word_embeddings" / "model.keras")
    embedding = base.get_layer(index=1)
    assert isinstance(embedding, keras.layers.Embedding)
    # keras-team/keras#19398: Keras 3.0-3.1 counted a frozen Embedding as trainable.
    assert not any(w is embedding.embeddings for w in base.trainable_weights)
    assert not any(isinstance(layer, keras.layers.Embedding) for layer in ext.layers)
    assert ext.input_shape == (None, 150, DIM)
    rows = embedding.embeddings.shape[0]
    saved = {n: json.loads((output / n / "metrics.json").read_text())["artifacts"]["model.keras"] for n in SCRIPTS}
    # The external model is smaller by (nearly) the embedding matrix: rows x dim x 4 bytes.
    assert saved["pretrained_word_embeddings"] - saved["pretrained_external_word_embeddings"] >= 0.95 * rows * DIM * 4


def test_saved_models_reload_in_a_fresh_process_with_the_same_predictions(runs, tmp_path):
    output, _ = runs
    store = EmbeddingStore.open(json.loads(
        (output / "pretrained_external_word_embeddings" / "manifest.json").read_text())["store"]["path"])
    tokens = [tokenizer.tokenize("The rocket reached orbit round the moon"), tokenizer.tokenize("Doctor, patient!")]
    word_index = json.loads((output / "pretrained_word_embeddings" / "word_index.json").read_text())
    inputs = {"pretrained_word_embeddings": tokenizer.pad([tokenizer.to_ids(t, word_index) for t in tokens], 150),
              "pretrained_external_word_embeddings": store.batch(tokens, 150)}
    for name, x in inputs.items():
        here = keras.saving.load_model(output / name / "model.keras").predict(x, verbose=0)
        np.save(tmp_path / "x.npy", x)
        code = ("import sys, numpy as np, keras; m = keras.saving.load_model(sys.argv[1]); "
                "np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0))")
        subprocess.run([sys.executable, "-c", code, str(output / name / "model.keras"), str(tmp_path / "x.npy"),
                        str(tmp_path / "y.npy")], check=True, capture_output=True)
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), here, rtol=1e-5, atol=1e-6)


def test_bydate_layout_gives_a_test_accuracy(tmp_path, script_settings, vectors_file):
    root = tmp_path / "20news-bydate"
    write_corpus(root / "20news-bydate-train", docs_per_topic=40)
    write_corpus(root / "20news-bydate-test", docs_per_topic=10, seed=1)
    argv = [a for a in script_settings if not a.startswith("--TEXT_DATA_DIR")] + [f"--TEXT_DATA_DIR={root}"]
    metrics = external.main(argv + ["--EPOCHS=3"])
    assert metrics["test_accuracy"] >= 0.9  # chance is 1/3


def test_script_prints_a_bad_setting_as_one_line_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "pretrained_word_embeddings.py"), "--EPOCHS=0"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: settings: EPOCHS=0 must be >= 1")
    assert "Traceback" not in done.stderr
