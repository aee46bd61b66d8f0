"""Tiny fixtures that the tests make themselves: a vectors file, a corpus, a store.

The words fall into three topics; each topic's words share a direction in vector space, so a
model can learn the topics from the vectors in one or two epochs.
"""

import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from external_embeddings.store import EmbeddingStore, write_store  # noqa: E402

TRAIN_TAR = ROOT.parent / "shared" / "data" / "20news-bydate-train.tar.gz"  # the real split, beside the clone
DIM = 8
TOPICS = {
    "rec.space": ["orbit", "rocket", "moon", "launch", "nasa", "shuttle", "planet", "star"],
    "rec.sport": ["pitcher", "inning", "goal", "hockey", "team", "score", "season", "coach"],
    "sci.med": ["doctor", "patient", "disease", "drug", "clinic", "therapy", "virus", "nurse"],
}
COMMON = ["the", "a", "of", "and", "to", "in", "is", "it", "that", "was"]
UNKNOWN = ["zorblax", "quuxify"]  # in the corpus, not in the vectors


def pytest_addoption(parser):
    parser.addoption("--bench", action="store_true",
                     help="also run the benchmarks' --quick forms end to end (3 tests, about 4 minutes)")


def pytest_configure(config):
    config.addinivalue_line("markers", "bench: a benchmark's --quick run end to end; runs with --bench")


def pytest_collection_modifyitems(config, items):
    """Skip the ``bench`` tests unless --bench is given: each runs a whole benchmark (1-1.5 minutes),
    a quarter of the suite's time, and a long case belongs in a benchmark."""
    if config.getoption("--bench"):
        return
    skip = pytest.mark.skip(reason="a benchmark's --quick run: python -m pytest --bench")
    for item in items:
        if item.get_closest_marker("bench"):
            item.add_marker(skip)


def real_posts(count=6, every=1):
    """``count`` real 20 Newsgroups posts (bodies; one file in ``every``, so that more groups come)
    when the archive is beside the clone, else generated texts."""
    from external_embeddings.text.corpus import strip_headers

    if not TRAIN_TAR.is_file():
        return [f"The rocket {i} reached orbit and the pitcher threw in the inning." for i in range(count)]
    posts = []
    with tarfile.open(TRAIN_TAR) as tar:
        files = (member for member in tar if member.isfile())
        for i, member in enumerate(files):
            if i % every == 0:
                posts.append(strip_headers(tar.extractfile(member).read().decode("latin-1")))
                if len(posts) == count:
                    break
    return posts


def vector_rows(seed=0):
    """(word, vector) pairs: topic words near their topic's axis, common words near the origin."""
    rng = np.random.default_rng(seed)
    rows = []
    for axis, words in enumerate(TOPICS.values()):
        for word in words:
            v = rng.normal(0, 0.1, DIM)
            v[axis] += 1.0
            rows.append((word, v))
    rows += [(word, rng.normal(0, 0.1, DIM)) for word in COMMON]
    return rows


def write_vectors(path, rows=None, header=False, newline="\n"):
    """Write a GloVe-format text file (optionally with a word2vec header) and return its path."""
    rows = vector_rows() if rows is None else rows
    lines = [f"{len(rows)} {len(rows[0][1])}"] if header else []
    lines += [word + " " + " ".join(f"{x:.6f}" for x in vector) for word, vector in rows]
    Path(path).write_bytes(newline.join(lines).encode("utf-8") + newline.encode())
    return Path(path)


def write_corpus(root, docs_per_topic=8, seed=0, header=True):
    """A 20 Newsgroups-layout corpus: one folder per topic, numbered latin-1 files with headers."""
    rng = np.random.default_rng(seed)
    number = 0
    for topic, words in TOPICS.items():
        (Path(root) / topic).mkdir(parents=True, exist_ok=True)
        for _ in range(docs_per_topic):
            number += 1
            body = " ".join(rng.choice(words + COMMON + UNKNOWN, size=int(rng.integers(5, 30))))
            head = f"From: someone@example.com\nNewsgroups: {topic}\nSubject: post {number}\n\n" if header else ""
            (Path(root) / topic / str(number)).write_bytes((head + body.capitalize() + ".\n").encode("latin-1"))
    return Path(root)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Keep the records of verified stores (and anything else the cache holds) out of ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "user-cache"
    monkeypatch.setenv("KEE_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def vectors_file(tmp_path_factory):
    return write_vectors(tmp_path_factory.mktemp("vectors") / "tiny.txt")


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "20_newsgroup")


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    rows = vector_rows()
    path = tmp_path_factory.mktemp("stores") / "tiny"
    write_store([w for w, _ in rows], np.array([v for _, v in rows], dtype=np.float32), path, {"file": "tiny"})
    return EmbeddingStore.open(path)


@pytest.fixture
def script_settings(tmp_path, vectors_file, corpus_dir, monkeypatch):
    """Command-line overrides for a quick, isolated run of either script on the tiny fixtures."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("KEE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KEE_CACHE_DIR", str(tmp_path / "cache"))  # for any subprocess; --CACHE_DIR says the same
    return [f"--VECTORS={vectors_file}", f"--TEXT_DATA_DIR={corpus_dir}", f"--CACHE_DIR={tmp_path / 'cache'}",
            f"--OUTPUT_DIR={tmp_path / 'output'}", "--EPOCHS=1", "--BATCH_SIZE=8", "--MAX_SEQUENCE_LENGTH=150",
            "--MAX_NUM_WORDS=100", "--VALIDATION_SPLIT=0.25", "--CORPUS_URL="]


@pytest.fixture(scope="session")
def served(tmp_path_factory, vectors_file, corpus_dir):
    """Two external models (different seeds and lengths), one baseline model and one external model with
    the baseline's vocabulary, one store."""
    import json

    import pretrained_external_word_embeddings as external
    import pretrained_word_embeddings as baseline

    work = tmp_path_factory.mktemp("served")
    common = [f"--VECTORS={vectors_file}", f"--TEXT_DATA_DIR={corpus_dir}", f"--CACHE_DIR={work / 'cache'}",
              "--EPOCHS=1", "--BATCH_SIZE=8", "--MAX_NUM_WORDS=100", "--CORPUS_URL="]
    external.main(common + [f"--OUTPUT_DIR={work / 'models' / 'a'}", "--MAX_SEQUENCE_LENGTH=150", "--SEED=1"])
    external.main(common + [f"--OUTPUT_DIR={work / 'models' / 'b'}", "--MAX_SEQUENCE_LENGTH=170", "--SEED=2"])
    baseline.main(common + [f"--OUTPUT_DIR={work / 'baseline'}", "--MAX_SEQUENCE_LENGTH=150"])
    # Like for like with a baseline: only the 9 most frequent corpus words have vectors.
    external.main(common + [f"--OUTPUT_DIR={work / 'restricted'}", "--MAX_SEQUENCE_LENGTH=150",
                            "--STORE_VOCABULARY=false", "--MAX_NUM_WORDS=10"])  # the later setting wins
    manifest = json.loads((work / "models/a/pretrained_external_word_embeddings/manifest.json").read_text())
    return work, EmbeddingStore.open(manifest["store"]["path"])
