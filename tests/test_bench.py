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
