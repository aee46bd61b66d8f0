"""Two real processes making the same store at the same time: both end with the one store.

Each process waits for a start file, so both parse the vectors file at the same moment and
reach the write within a fraction of a second of each other.
"""

import subprocess
import sys
import time

import numpy as np

from conftest import ROOT
from external_embeddings.store import EmbeddingStore

RACER = """
import os, sys, time
from pathlib import Path
from external_embeddings import cli, sources, store  # imported before the start, not after
from external_embeddings.vectors import read, text_format
Path(sys.argv[1] + f".ready-{{os.getpid()}}").touch()
while not Path(sys.argv[1]).exists():
    time.sleep(0.005)
sys.argv = sys.argv[2:]
{body}
"""


def big_vectors(path, rows=150_000, dim=16):
    """A vectors file that takes about a second to parse, so the two runs overlap."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(rows, dim)).round(5)
    path.write_text("".join(f"w{i} " + " ".join(map(str, row)) + "\n" for i, row in enumerate(values)))
    return path


def race(tmp_path, body, *args):
    """Start two processes running ``body`` with ``args``; let them go at once; return both results."""
    go = tmp_path / "go"
    racers = [subprocess.Popen([sys.executable, "-c", RACER.format(body=body), str(go), "racer", *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
              for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # until both have imported what they need and wait for the start file
    go.touch()
    return [(r.wait(timeout=300), *r.communicate()) for r in racers]


def test_two_convert_commands_into_one_store_both_end_with_it(tmp_path):
    source = big_vectors(tmp_path / "big.txt")
    body = "from external_embeddings.cli import main; main(['convert', *sys.argv[1:], '--quiet'])"
    results = race(tmp_path, body, source, tmp_path / "store")
    for code, out, err in results:
        assert code == 0 and "Traceback" not in err, err
        assert out.startswith("Converted 150,000 words of dimension 16")
    assert EmbeddingStore.open(tmp_path / "store", verify=True).count == 150_000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial folders left


def test_two_runs_filling_one_cache_entry_both_use_it(tmp_path):
    source = big_vectors(tmp_path / "big.txt")
    body = ("from external_embeddings import sources\n"
            "store = sources.open_vectors(sys.argv[1], sys.argv[2], 2**30)\n"
            "print(store.path, store.fingerprint)")
    results = race(tmp_path, body, source, tmp_path / "cache")
    for code, _, err in results:
        assert code == 0 and "Traceback" not in err, err
    assert results[0][1] == results[1][1]  # the same store path and fingerprint
    assert len(list((tmp_path / "cache" / "stores").iterdir())) == 1
