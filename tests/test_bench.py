"""The cheapest benchmark piece (bench/bench_open.py's open vs parse) on a tiny vectors file."""

import sys

from conftest import ROOT, vector_rows, write_vectors
from external_embeddings.sources import convert_file

sys.path.insert(0, str(ROOT / "bench"))
import bench_open  # noqa: E402


def test_open_vs_parse_returns_timings_and_a_ratio(tmp_path):
    vectors = write_vectors(tmp_path / "tiny.txt")
    convert_file(vectors, tmp_path / "store", progress=False)
    tokens = [word for word, _ in vector_rows()] + ["notaword"]
    figures = bench_open.open_vs_parse(vectors, tmp_path / "store", tokens, repeats=2)
    assert figures["parse_seconds"] > 0 and figures["open_seconds"] > 0
    assert figures["open_speedup"] == figures["parse_seconds"] / figures["open_seconds"]
    assert figures["tokens"] == len(tokens)
    assert len(bench_open.classic_parse(vectors)) == len(vector_rows())
