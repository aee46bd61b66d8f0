"""The cheapest benchmark piece (bench/bench_open.py's open vs parse) on a tiny vectors file."""

import sys

import numpy as np

from conftest import ROOT, vector_rows, write_vectors
from external_embeddings.sources import convert_file
from external_embeddings.store import EmbeddingStore

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
