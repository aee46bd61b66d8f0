"""Benchmark pieces: bench_open's open vs parse, the synthetic vectors, and (with --bench) bench_scale, bench_dtypes and bench_seeds
--quick end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, vector_rows, write_vectors
from external_embeddings.sources import convert_file
from external_embeddings.store import EmbeddingStore
from external_embeddings.vectors.read import read_vectors

sys.path.insert(0, str(ROOT / "bench"))
import bench_open  # noqa: E402


def test_open_vs_parse_times_the_same_work_on_both_sides(tmp_path):
    vectors = write_vectors(tmp_path / "tiny.txt")
    convert_file(vectors, tmp_path / "store", progress=False)
    tokens = [word for word, _ in vector_rows()] + ["notaword"]
    figures = bench_open.open_vs_parse(vectors, tmp_path / "store", tokens, repeats=2)
    assert figures["tokens"] == len(tokens) and figures["tokens_found"] == len(tokens) - 1  # both sides agree
    # The parse that the store is timed against reads the same vectors the store holds.
    parsed, store = bench_open.classic_parse(vectors), EmbeddingStore.open(tmp_path / "store")
    assert list(parsed) == [word for word, _ in vector_rows()]
    np.testing.assert_array_equal(np.stack(list(parsed.values())), store.gather(store.ids(list(parsed))))


def test_serving_rows_compare_sides_and_state_every_goal():
    import bench_serve

    phase = {"requests": 10, "errors": 0, "texts_per_second": 10.0, "p50_ms": 1.0, "p99_ms": 2.0}
    runs = {f"{kind}/{mode}": {"ready_seconds": 1.0, "single": phase, "batch32": dict(phase, texts_per_second=20.0)}
            for kind in ("baseline", "external") for mode in bench_serve.MODES}
    runs["external/off"] = dict(runs["external/off"], single=dict(phase, errors=1))
    mb = 1e6
    figures = {"runs": runs, "ks": [1, 2, 4], "k": 8, "workers": 2, "cnn_bytes": 0.9 * mb, "embedding_bytes": 4 * mb,
               "word_index_bytes": 0.4 * mb, "pss": {"baseline": [100 * mb, 110 * mb, 130 * mb],
                                                     "external": [120 * mb, 121 * mb, 123 * mb]}}
    figures["pss_loaded"] = figures["pss"]
    rows = {r["measure"]: r for r in bench_serve.rows(figures)}
    assert rows["server, errors under load"]["verdict"] == "MISSED"  # one error anywhere misses the goal
    assert rows["server, 1 text/request, texts/s (p50 / p99 ms)"]["ratio"] == "1.00x"
    per_model = rows["server, sum of worker PSS per extra model, models loaded"]
    assert per_model["verdict"] == "met" and per_model["external"] == "1.0 MB"  # <= 1.2 x 0.9 MB x 2 workers
    assert "cross at K ~ 3" in rows["server, sum of worker PSS, models loaded, K=4, 2 workers"]["note"]


def test_ray_rows_compare_like_for_like_and_put_ray_serve_beside_uvicorn():
    import bench_ray
    import bench_ray_serve

    rows = bench_ray.scoring_rows(1000, {"predict, 1 core": 10.0, "predict, every core": 6.0, "1 node": 11.0,
                                         "2 node": 6.0})
    assert [(r["ratio"], r["verdict"]) for r in rows] == [("1.83x", "met"), ("0.91x", "met"), ("1.00x", "n/a")]
    phase = {"requests": 10, "errors": 0, "texts_per_second": 10.0, "p50_ms": 100.0, "p99_ms": 200.0}
    runs = {"uvicorn": [{"ready_seconds": 5.0, "single": phase, "batch32": phase}] * 2,
            "ray": [{"ready_seconds": 20.0, "single": dict(phase, texts_per_second=8.0, p99_ms=300.0),
                     "batch32": dict(phase, errors=1)}, {"ready_seconds": 30.0, "single": phase, "batch32": phase}]}
    rows = {r["measure"]: r for r in bench_ray_serve.rows(runs)}
    assert rows["Ray Serve vs uvicorn, 1 text/request, texts/s"]["ratio"] == "0.90x"  # medians over the runs
    assert rows["Ray Serve vs uvicorn, 1 text/request, p99 latency (ms)"]["ratio"] == "1.25x"
    assert rows["Ray Serve vs uvicorn, errors under load"]["verdict"] == "MISSED"
    assert rows["Ray Serve vs uvicorn, time to ready (s)"]["external"] == "25.0"



def test_protocol_rows_put_each_form_beside_predict_and_its_bodies_parse():
    import bench_protocol

    from external_embeddings.serving import oip_codec

    def phase(rate):
        return {"requests": 10, "errors": 0, "texts_per_second": rate, "p50_ms": 1.0, "p99_ms": 2.0}

    runs = {"predict": {"single": [phase(100.0), phase(90.0), phase(300.0)], "batch32": [phase(200.0)] * 3},
            "oip-binary": {"single": [phase(85.0)] * 3, "batch32": [phase(210.0)] * 3},
            "oip-json": {"single": [phase(50.0)] * 3, "batch32": [dict(phase(150.0), errors=1)] * 3}}
    rows = {r["measure"]: r for r in bench_protocol.rows({"runs": runs, "agree": True})}
    single = rows["protocol binary vs /v1/predict, 1 text/request, texts/s (p50 / p99 ms)"]
    assert (single["ratio"], single["verdict"]) == ("0.85x", "MISSED")  # 85 against the median round's 100
    assert rows["protocol binary vs /v1/predict, 32 texts/request, texts/s (p50 / p99 ms)"]["verdict"] == "met"
    assert rows["protocol json vs /v1/predict, 1 text/request, texts/s (p50 / p99 ms)"]["verdict"] == "n/a"
    assert rows["protocol, errors under load and answers that differ"]["verdict"] == "MISSED"
    texts = ["orbit", "", "Zürich 東京"]
    content, headers = bench_protocol.body("oip-binary", texts)
    parsed = oip_codec.parse_request(content, headers["Inference-Header-Content-Length"], 10)
    assert parsed.texts == texts and parsed.outputs == {"probabilities": True, "labels": True}
    assert oip_codec.parse_request(bench_protocol.body("oip-json", texts), None, 10).texts == texts

def test_synthetic_vectors_are_deterministic_glove_text(tmp_path):
    import bench_scale

    lines = bench_scale.synthetic_lines(5, 3, dim=4)
    assert lines == bench_scale.synthetic_lines(5, 3, dim=4) and lines != bench_scale.synthetic_lines(6, 3, dim=4)
    (tmp_path / "s.txt").write_bytes(lines)
    parsed = read_vectors(tmp_path / "s.txt", progress=False)
    assert parsed.words == ["w5", "w6", "w7"] and parsed.matrix.shape == (3, 4)
    assert np.abs(parsed.matrix).max() < 1 and len(set(parsed.matrix.ravel().tolist())) == 12


def run_quick(bench, tmp_path):
    """Run ``bench --quick`` in a temporary results folder; returns the figures it saved."""
    out = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / bench), "--quick", "--json", str(out)],
                          env={**os.environ, "BENCH_RESULTS_DIR": str(tmp_path / "results")}, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.bench
def test_scale_benchmark_quick_runs_and_reports_every_side(tmp_path):
    """The --quick form end to end (about 1.5 minutes), in a temporary results folder."""
    figures = run_quick("bench_scale.py", tmp_path)
    assert set(figures["convert"]) == {"this project", "this project (1 thread)", "original loop", "gensim text loader"}
    assert all(side["seconds"] > 0 and side["peak_rss"] > 0 for side in figures["convert"].values())
    # Both readers found the same 900 known words of the 1,000 looked up (a tenth are unknown).
    assert figures["open"]["store"]["found"] == figures["open"]["gensim mmap"]["found"] == 900
    assert figures["open"]["store"]["rss_after_open"] <= 0.01 * figures["vector_bytes"]
    embedding = 10_001 * 300 * 4
    assert figures["model_bytes"]["baseline-10000"] > figures["model_bytes"]["external"] + embedding
    assert figures["dtypes"]["float16"]["bytes"] < 0.6 * figures["dtypes"]["float32"]["bytes"]
    assert {r["verdict"] for r in figures["rows"]} <= {"met", "MISSED", "n/a"} and len(figures["rows"]) >= 10
    assert (tmp_path / "results" / "scale.png").stat().st_size > 0


@pytest.mark.bench
def test_dtype_benchmark_quick_trains_on_every_store_and_rebuilds_the_scripts_validation_split(tmp_path):
    """bench_dtypes --quick: one 1-epoch run per dtype on a small corpus, then the same-model rows."""
    figures = run_quick("bench_dtypes.py", tmp_path)
    assert set(figures["trained"]) == {"float32", "float16", "int8"}
    (seed,) = figures["seeds"]
    same = figures["same_model"][str(seed)]
    # The bench refuses to report unless its rebuilt split gives the run's own float32 figure.
    assert abs(same["float32"] - figures["trained"]["float32"][str(seed)]) < 1e-6
    assert all(0 <= accuracy <= 1 for accuracy in same.values())
    assert [r["verdict"] for r in figures["rows"][::2]][0] == "n/a" and len(figures["rows"]) == 6


def test_runtime_rows_put_todays_path_beside_onnx_and_state_every_goal():
    import bench_runtime

    def run(single, batch32, pss, per, ready):
        phase = {"requests": 10, "errors": 0, "p50_ms": 10.0, "p99_ms": 20.0}
        return {"ready_seconds": ready, "single": dict(phase, texts_per_second=single),
                "batch32": dict(phase, texts_per_second=batch32), "pss_bytes": pss, "per_model_per_worker_bytes": per}

    mb = 1e6
    figures = {"k": 8, "workers": 2, "weights_bytes": 0.86 * mb, "growth": [{"k": 1, "pss_bytes": 60 * mb},
                                                                            {"k": 100, "pss_bytes": 400 * mb}],
               "runs": {"today": run(100, 250, 1200 * mb, 6 * mb, 20), "keras": run(200, 260, 1300 * mb, 6 * mb, 21),
                        "onnx": run(260, 300, 300 * mb, 2 * mb, 4)}}
    rows = {r["measure"]: r for r in bench_runtime.rows(figures)}
    assert [(r["ratio"], r["verdict"]) for r in rows.values()][:3] == [("2.60x", "met"), ("-", "met"), ("1.20x", "met")]
    assert rows["server, sum of worker PSS, K=8, 2 workers"]["verdict"] == "met"  # 0.25x
    assert rows["server, PSS per extra model per worker (K=1 vs 8)"]["verdict"] == "MISSED"  # 2.33x the weights
    assert rows["server, time from start to ready, K=8 (s)"]["ratio"] == "0.20x"
    assert rows["one ONNX worker, K=100 models, PSS after requests"]["note"] == "K=1: 60.0 MB, K=100: 400.0 MB"


@pytest.mark.bench
def test_seeds_benchmark_quick_gives_spread_of_final_and_best_per_side(tmp_path):
    """bench_seeds --quick: 2 seeds x 2 sides, 1 epoch each on a tiny corpus, each run in its own process."""
    out = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_seeds.py"), "--quick", "--sides=baseline,like",
                           "--json", str(out)], env={**os.environ, "BENCH_RESULTS_DIR": str(tmp_path / "results")},
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures == json.loads((tmp_path / "results" / "seeds-quick.json").read_text())
    assert figures["seeds"] == [1337, 2] and set(figures["sides"]) == {"baseline", "like"}
    assert figures["machine"]["cores"] >= 1 and figures["machine"]["cpu"]
    assert set(figures["versions"]) == {"tensorflow", "keras", "numpy"}
    assert "--STORE_VOCABULARY=false" in figures["commands"]["like"]
    for side in figures["sides"].values():
        finals = [run["final"] for run in side["runs"].values()]
        assert side["final"]["n"] == 2 and side["final"]["min"] == min(finals) and side["final"]["max"] == max(finals)
        assert all(run["by_epoch"][-1] == run["final"] and run["best_epoch"] == 1 for run in side["runs"].values())
        assert side["best"]["mean"] >= side["final"]["mean"]
    # Like for like, the external model sees the baseline's inputs from the same initial weights.
    by_epoch = {side: {seed: run["by_epoch"] for seed, run in figures["sides"][side]["runs"].items()}
                for side in ("baseline", "like")}
    assert by_epoch["like"] == by_epoch["baseline"]
    assert "baseline  final  mean" in done.stdout
