"""Where the data comes from: a local archive, a download (served on 127.0.0.1), or the demo corpus."""

import functools
import http.server
import shutil
import tarfile
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import write_corpus
from external_embeddings import sources
from external_embeddings.text import tokenizer

TOPIC_NAMES = ["rec.space", "rec.sport", "sci.med"]


def settings(tmp_path, **overrides):
    values = {"TEXT_DATA_DIR": "", "CORPUS_URL": "", "CACHE_DIR": str(tmp_path / "cache"), "SEED": 7}
    return SimpleNamespace(**{**values, **overrides})


def bydate_archive(tmp_path):
    root = tmp_path / "src"
    write_corpus(root / "20news-bydate-train", docs_per_topic=4)
    write_corpus(root / "20news-bydate-test", docs_per_topic=2, seed=3)
    archive = tmp_path / "20news-bydate.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "20news-bydate-train", arcname="20news-bydate-train")
        tar.add(root / "20news-bydate-test", arcname="20news-bydate-test")
    return archive


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; stopped after the test."""
    (tmp_path / "www").mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, tmp_path / "www"
    httpd.shutdown()
    httpd.server_close()


def test_corpus_is_downloaded_once_into_the_cache(tmp_path, server, store):
    httpd, www = server
    bydate_archive(tmp_path).rename(www / "20news-bydate.tar.gz")
    url = f"http://127.0.0.1:{httpd.server_address[1]}/20news-bydate.tar.gz"
    corpus = sources.find_corpus(settings(tmp_path, CORPUS_URL=url), store)
    assert corpus.label_names == TOPIC_NAMES and len(corpus.texts) == 12 and len(corpus.test_texts) == 6
    (www / "20news-bydate.tar.gz").unlink()  # a second run must not need the server
    again = sources.find_corpus(settings(tmp_path, CORPUS_URL=url), store)
    assert again.texts == corpus.texts


def test_two_urls_ending_in_the_same_file_name_are_two_corpora(tmp_path, server, store):
    """The download cache is keyed by the whole URL: a new CORPUS_URL is never the old corpus."""
    httpd, www = server
    for folder, topics in (("one", 3), ("two", 2)):
        root = tmp_path / "src" / folder
        write_corpus(root, docs_per_topic=3)
        for extra in sorted(p.name for p in root.iterdir())[topics:]:
            shutil.rmtree(root / extra)
        (www / folder).mkdir()
        with tarfile.open(www / folder / "corpus.tar.gz", "w:gz") as tar:
            for category in sorted(root.iterdir()):
                tar.add(category, arcname=category.name)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    one = sources.find_corpus(settings(tmp_path, CORPUS_URL=f"{base}/one/corpus.tar.gz"), store)
    two = sources.find_corpus(settings(tmp_path, CORPUS_URL=f"{base}/two/corpus.tar.gz"), store)
    assert len(one.label_names) == 3 and len(two.label_names) == 2


def test_a_tarball_of_a_corpus_folder_packed_with_the_folder_itself_loads(tmp_path, store):
    """``tar czf corpus.tar.gz news/``, the usual way to pack a folder, gives its categories."""
    write_corpus(tmp_path / "news", docs_per_topic=2)
    with tarfile.open(tmp_path / "corpus.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "news", arcname="news")
    corpus = sources.find_corpus(settings(tmp_path, TEXT_DATA_DIR=str(tmp_path / "corpus.tar.gz")), store)
    assert corpus.label_names == TOPIC_NAMES and len(corpus.texts) == 6


def test_offline_falls_back_to_the_demo_corpus_with_one_line(tmp_path, server, store, capsys):
    httpd, _ = server
    url = f"http://127.0.0.1:{httpd.server_address[1]}/missing.tar.gz"  # 404, as when offline
    corpus = sources.find_corpus(settings(tmp_path, CORPUS_URL=url), store)
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[:-1] == [f"Downloading data from {url}"]  # Keras' own line, then ours
    assert printed[-1].startswith(f"Could not download the corpus from {url} (HTTP Error 404")
    assert "using the generated demo corpus in" in printed[-1]
    assert len(corpus.label_names) >= 2 and len(corpus.texts) >= 300
    assert not list((tmp_path / "cache").rglob("*.partial-*"))


def test_demo_corpus_is_deterministic_from_the_seed(tmp_path, store):
    a = sources.find_corpus(settings(tmp_path / "a"), store)
    b = sources.find_corpus(settings(tmp_path / "b"), store)
    c = sources.find_corpus(settings(tmp_path / "c", SEED=8), store)
    assert a.texts == b.texts and a.texts != c.texts


def test_demo_corpus_is_learnable_through_glove(tmp_path):
    """Topics drawn from GloVe neighbourhoods: mean document vectors separate them well."""
    from sklearn.linear_model import LogisticRegression

    glove = sources.open_vectors("", tmp_path / "cache", 2**31)
    corpus = sources.find_corpus(settings(tmp_path), glove)
    assert len(corpus.label_names) == 20 and len(corpus.texts) == 3000
    found = glove.lookup(w for t in corpus.texts for w in tokenizer.tokenize(t))
    features = np.stack([glove.gather(tokenizer.to_ids(tokenizer.tokenize(t), found)).mean(axis=0)
                         for t in corpus.texts])
    order = np.random.default_rng(0).permutation(len(features))
    train, test = order[:2400], order[2400:]
    model = LogisticRegression(max_iter=2000).fit(features[train], corpus.labels[train])
    assert model.score(features[test], corpus.labels[test]) > 0.8


def test_text_data_dir_may_be_a_tar_gz(tmp_path, store):
    corpus = sources.find_corpus(settings(tmp_path, TEXT_DATA_DIR=str(bydate_archive(tmp_path))), store)
    assert corpus.label_names == TOPIC_NAMES and len(corpus.test_texts) == 6


def test_vectors_text_file_is_converted_once_and_reused(tmp_path, vectors_file, capsys):
    first = sources.open_vectors(str(vectors_file), tmp_path / "cache", 2**31)
    again = sources.open_vectors(str(vectors_file), tmp_path / "cache", 2**31)
    assert first.path == again.path and first.fingerprint == again.fingerprint
    assert len(list((tmp_path / "cache" / "stores").iterdir())) == 1


def test_a_vectors_file_reached_through_links_is_converted_once(tmp_path, vectors_file):
    """A link under another name, a link to the link, and the real path: one cache entry, one conversion."""
    (tmp_path / "glove-current.txt").symlink_to(vectors_file)
    (tmp_path / "latest").symlink_to(tmp_path / "glove-current.txt")
    opened = [sources.open_vectors(str(path), tmp_path / "cache", 2**31)
              for path in (tmp_path / "glove-current.txt", tmp_path / "latest", vectors_file)]
    assert len({store.path for store in opened}) == 1
    assert [p.name for p in (tmp_path / "cache" / "stores").iterdir()] == [opened[0].path.name]
    assert opened[0].path.name.startswith(vectors_file.stem + "-")


def test_a_text_data_archive_reached_through_a_link_is_unpacked_once(tmp_path, store):
    archive = bydate_archive(tmp_path)
    (tmp_path / "corpus-link.tgz").symlink_to(archive)
    for path in (tmp_path / "corpus-link.tgz", archive):
        sources.find_corpus(settings(tmp_path, TEXT_DATA_DIR=str(path)), store)
    assert len(list((tmp_path / "cache" / "corpora").iterdir())) == 1


def test_a_cache_dir_that_cannot_be_made_is_one_input_error(tmp_path, vectors_file):
    from external_embeddings.errors import InputError

    (tmp_path / "somefile").write_text("not a folder")
    with pytest.raises(InputError, match="somefile/stores: cannot be created .*set CACHE_DIR to a folder"):
        sources.open_vectors(str(vectors_file), tmp_path / "somefile", 2**31)


def test_a_cache_entry_that_fails_to_be_made_is_an_error(tmp_path):
    """A real failure is not taken for a lost race (test_races.py races two real processes)."""
    def fail(target):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        sources._make_once(tmp_path / "other", fail)
