"""The runtimes: ONNX Runtime and Keras (fused or not) give the same answers; model.onnx is checked."""

import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from external_embeddings import InputError
from external_embeddings.predictor import Predictor

TEXTS = ["The rocket reached orbit around the moon.", "The doctor saw a patient with a virus.",
         "The pitcher threw in the ninth inning\nand the team won.", "", "zorblax", "nasa launch star planet " * 40]
RUN = "pretrained_external_word_embeddings"


@pytest.fixture(scope="module")
def every_kind(served, tmp_path_factory):
    """Two external models of different lengths, one with the baseline's vocabulary, and a baseline."""
    work, _ = served
    folder = tmp_path_factory.mktemp("kinds") / "models"
    shutil.copytree(work / "models", folder)
    shutil.copytree(work / "baseline", folder / "base")
    shutil.copytree(work / "restricted", folder / "restricted")
    return folder


def probabilities(results, name):
    return np.array([list(r[name]["probabilities"].values()) for r in results])


def test_onnx_equals_keras_fused_and_unfused_for_every_kind_of_model(served, every_kind, caplog):
    _, store = served
    with caplog.at_level(logging.WARNING, "external_embeddings.runtime"):
        onnx = Predictor(store, every_kind, runtime="onnx", threads=1)
    assert not caplog.records  # every model had its model.onnx, written when the script saved it
    assert {d["runtime"] for d in onnx.describe().values()} == {"onnx"}
    fused = Predictor(store, every_kind, runtime="keras")
    alone = Predictor(store, every_kind, runtime="keras", fuse=False)
    assert {d["runtime"] for d in fused.describe().values()} == {"keras"}
    assert onnx.describe() == {name: {**d, "runtime": "onnx"} for name, d in fused.describe().items()}
    answers = {side: p.predict(TEXTS) for side, p in (("onnx", onnx), ("fused", fused), ("alone", alone))}
    assert len(onnx.models) == 4
    for name in onnx.models:
        reference = probabilities(answers["alone"], name)
        for side in ("onnx", "fused"):
            assert np.abs(probabilities(answers[side], name) - reference).max() <= 1e-5, (side, name)
            assert [r[name]["known_words"] for r in answers[side]] == [r[name]["known_words"] for r in answers["alone"]]
    # A subset runs alone on both runtimes, and answers as the whole group did.
    for predictor, side in ((onnx, "onnx"), (fused, "fused")):
        one = predictor.predict(TEXTS, models=[f"b/{RUN}"])
        assert np.abs(probabilities(one, f"b/{RUN}") - probabilities(answers[side], f"b/{RUN}")).max() <= 1e-6


def test_keras_runs_a_group_as_one_call(served, monkeypatch):
    work, store = served
    predictor = Predictor(store, work / "models", runtime="keras")
    (runner, names), = predictor._runners[None]
    assert names == [f"a/{RUN}", f"b/{RUN}"] and runner.fused is not None
    calls = []
    for model, _, _ in predictor.models.values():
        monkeypatch.setattr(model, "predict_on_batch", lambda x: calls.append("alone"))
    fused_call = runner.fused.predict_on_batch
    monkeypatch.setattr(runner.fused, "predict_on_batch", lambda x: calls.append("fused") or fused_call(x))
    predictor.predict(TEXTS)
    assert calls == ["fused"]


def copy_run(served, tmp_path, name="a"):
    work, _ = served
    shutil.copytree(work / "models" / name, tmp_path / name)
    return tmp_path / name / RUN


def test_a_model_without_model_onnx_runs_on_keras_said_in_one_line(served, tmp_path, caplog):
    _, store = served
    run = copy_run(served, tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["onnx"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "model.onnx").unlink()
    shutil.copytree(served[0] / "models" / "b", tmp_path / "b")
    with caplog.at_level(logging.WARNING, "external_embeddings.runtime"):
        predictor = Predictor(store, tmp_path, runtime="onnx")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"model a/{RUN} runs on Keras, not ONNX: no model.onnx in its folder (saved before; add one "
                     "with python -m external_embeddings export MODELS)"]
    assert {n: d["runtime"] for n, d in predictor.describe().items()} == {f"a/{RUN}": "keras", f"b/{RUN}": "onnx"}
    reference = Predictor(store, tmp_path, runtime="keras").predict(TEXTS)
    for name in predictor.models:
        assert np.abs(probabilities(predictor.predict(TEXTS), name) - probabilities(reference, name)).max() <= 1e-5


@pytest.mark.parametrize("damage, message", [
    ("flip a byte", "model.onnx: does not match the sha256 its manifest records; export it again"),
    ("remove it", "model.onnx: is missing, but its manifest names it"),
    ("bad entry", "manifest.json: has no valid \"onnx\" entry"),
])
def test_a_model_onnx_that_is_not_the_exported_one_is_refused(served, tmp_path, damage, message):
    _, store = served
    run = copy_run(served, tmp_path)
    if damage == "flip a byte":
        data = bytearray((run / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 1
        (run / "model.onnx").write_bytes(bytes(data))
    elif damage == "remove it":
        (run / "model.onnx").unlink()
    else:
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["onnx"]["sha256"] = 7
        (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError) as raised:
        Predictor(store, tmp_path, runtime="onnx")
    assert message in str(raised.value) and len(str(raised.value).splitlines()) == 1
    Predictor(store, tmp_path, runtime="keras")  # Keras never reads model.onnx


def test_export_command_adds_model_onnx_to_a_folder_saved_before(served, tmp_path, caplog):
    _, store = served
    run = copy_run(served, tmp_path)
    before = json.loads((run / "manifest.json").read_text())
    manifest = {k: v for k, v in before.items() if k != "onnx"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "model.onnx").unlink()
    done = subprocess.run([sys.executable, "-m", "external_embeddings", "export", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Exported {run / 'model.onnx'} (") and "1 model(s) exported" in done.stdout
    assert done.stderr == ""
    after = json.loads((run / "manifest.json").read_text())
    assert after["onnx"]["file"] == "model.onnx" and len(after["onnx"]["sha256"]) == 64
    assert {k: v for k, v in after.items() if k != "onnx"} == manifest
    assert not [p for p in tmp_path.rglob(".*")]  # no partial folder left behind
    with caplog.at_level(logging.WARNING, "external_embeddings.runtime"):
        predictor = Predictor(store, tmp_path, runtime="onnx")
    assert not caplog.records and predictor.describe()[f"a/{RUN}"]["runtime"] == "onnx"


def test_export_command_refuses_a_folder_without_models(tmp_path):
    done = subprocess.run([sys.executable, "-m", "external_embeddings", "export", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "holds no model.keras" in done.stderr


def test_an_export_that_differs_from_keras_is_not_kept(served, tmp_path, monkeypatch, capsys):
    from external_embeddings.models import onnx_export
    from external_embeddings.models.model import load_model

    model = load_model(served[0] / "baseline" / "pretrained_word_embeddings")
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # any export differs by more than this
    assert onnx_export.export_quietly(model, tmp_path, "runs/base") is None
    assert list(tmp_path.iterdir()) == []
    out = capsys.readouterr().out
    assert out.startswith("Not saved: runs/base/model.onnx (its output differs from the Keras model's by ")
    assert out.endswith("; servers will run this model on Keras.\n")


def test_the_onnx_path_never_imports_keras_or_tensorflow(served, every_kind):
    _, store = served
    code = ("import sys; from external_embeddings import EmbeddingStore, Predictor; "
            f"p = Predictor(EmbeddingStore.open({str(store.path)!r}), {str(every_kind)!r}, runtime='onnx'); "
            "r = p.predict(['the rocket reached orbit'] * 3); assert len(r) == 3 and len(r[0]) == 4; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'tf2onnx', 'onnx')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_unknown_runtime_or_threads_is_one_error(served):
    work, store = served
    with pytest.raises(InputError, match="--runtime: is 'tvm'"):
        Predictor(store, work / "models", runtime="tvm")
    with pytest.raises(InputError, match="--threads: is -2"):
        Predictor(store, work / "models", threads=-2)


def test_keras_fuses_models_saved_under_the_same_names(served, tmp_path):
    """Models saved by separate runs carry the same layer and model names; fused, they still run."""
    _, store = served
    copy_run(served, tmp_path)
    shutil.copytree(tmp_path / "a", tmp_path / "again")
    predictor = Predictor(store, tmp_path, runtime="keras")
    (runner, names), = predictor._runners[None]
    assert runner.fused is not None and len(names) == 2
    results = predictor.predict(TEXTS)
    assert np.abs(probabilities(results, f"a/{RUN}") - probabilities(results, f"again/{RUN}")).max() == 0
