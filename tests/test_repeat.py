"""What docs/accuracy.md promises repeats: the same seed, in fresh processes on the same machine with
the same thread count and versions, gives the same metrics and the same trained weights."""

import json
import os
import subprocess
import sys

import keras
import numpy as np

from conftest import ROOT

SCRIPT = "pretrained_external_word_embeddings"


def train(script_settings, tmp_path, name, *extra):
    """One run of the external script in a fresh process; returns its metrics and trained weights."""
    out = tmp_path / name
    argv = [a for a in script_settings if not a.startswith("--OUTPUT_DIR")] + [f"--OUTPUT_DIR={out}", *extra]
    done = subprocess.run([sys.executable, str(ROOT / f"{SCRIPT}.py"), *argv], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / SCRIPT / "metrics.json").read_text())
    return metrics, keras.saving.load_model(out / SCRIPT / "model.keras").get_weights()


def test_the_same_seed_in_fresh_processes_repeats_metrics_and_weights_exactly(script_settings, tmp_path):
    argv = ["--EPOCHS=2", "--SEED=7"]
    first, first_weights = train(script_settings, tmp_path, "first", *argv)
    again, again_weights = train(script_settings, tmp_path, "again", *argv)
    other, other_weights = train(script_settings, tmp_path, "other", "--EPOCHS=2", "--SEED=8")

    assert first["val_accuracy_by_epoch"] == again["val_accuracy_by_epoch"]
    assert len(first["val_accuracy_by_epoch"]) == 2
    assert all(np.array_equal(a, b) for a, b in zip(first_weights, again_weights, strict=True))  # bit for bit
    # The comparison can tell runs apart: another seed trains other weights.
    assert not all(np.array_equal(a, b) for a, b in zip(first_weights, other_weights, strict=True))
    # Each run records what it repeats under, so two metrics.json files say whether they can agree.
    for key in ("seed", "cpu", "cores", "intra_op_threads", "versions"):
        assert first[key] == again[key]
    assert first["seed"] == 7 and other["seed"] == 8 and first["intra_op_threads"] >= 1
    assert set(first["versions"]) == {"tensorflow", "keras", "numpy"}


def test_best_epoch_is_the_first_of_the_highest_and_final_is_the_last():
    from external_embeddings.models.results import accuracy_by_epoch

    history = keras.callbacks.History()
    history.history = {"val_accuracy": [0.5, 0.7, 0.7, 0.6]}
    assert accuracy_by_epoch(history) == {"val_accuracy": 0.6, "best_val_accuracy": 0.7, "best_epoch": 2,
                                          "val_accuracy_by_epoch": [0.5, 0.7, 0.7, 0.6]}
