"""A vectors file is data: converting one never unpickles it unless the user names the gensim format.

Each test writes a real pickle whose loading would create a marker file (as one holding
``os.system(...)`` would run a command), names it like a text vectors file, and checks that no
way of converting it without ``--format gensim`` / ``VECTORS_FORMAT=gensim`` loads it.
"""

import gzip
import pickle

import pytest

import config
from external_embeddings import settings, sources
from external_embeddings.errors import InputError
from external_embeddings.vectors.read import read_vectors
from test_bad_vectors import cli, cli_error


class Payload:
    """Unpickling this opens ``marker`` for writing, which creates it: proof that the pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def write_evil(tmp_path, protocol=4):
    """(a pickle named crawl-300d-2M.vec, the marker its loading would create)."""
    marker = tmp_path / "marker"
    path = tmp_path / "crawl-300d-2M.vec"
    path.write_bytes(pickle.dumps(Payload(marker), protocol=protocol))
    assert path.read_bytes()[:1] == b"\x80"
    return path, marker


@pytest.fixture
def evil(tmp_path):
    return write_evil(tmp_path)


def test_the_convert_command_refuses_a_pickle_in_one_line_and_never_loads_it(evil, tmp_path):
    path, marker = evil
    line = cli_error(cli("convert", path, tmp_path / "stores" / "s", "--quiet"))
    assert line.startswith(f"error: {path}: starts like a pickle") and "--format gensim" in line
    assert not marker.exists()
    assert not (tmp_path / "stores").exists() or list((tmp_path / "stores").iterdir()) == []


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("fmt", ["auto", "text", "word2vec-binary"])
def test_reading_it_as_any_other_format_is_an_error_never_a_load(tmp_path, protocol, fmt):
    path, marker = write_evil(tmp_path, protocol)
    with pytest.raises(InputError, match=str(path)):
        read_vectors(path, progress=False, format=fmt)
    assert not marker.exists()


def test_a_gzipped_pickle_is_refused_too(evil, tmp_path):
    path, marker = evil
    packed = tmp_path / "crawl.vec.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    line = cli_error(cli("convert", packed, tmp_path / "s", "--quiet"))
    assert "crawl.vec.gz: starts like a pickle" in line and not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_convert_file_and_the_scripts_vectors_setting_refuse_it(tmp_path, protocol):
    path, marker = write_evil(tmp_path, protocol)
    with pytest.raises(InputError, match="starts like a pickle.*--format gensim.*VECTORS_FORMAT=gensim"):
        sources.convert_file(path, tmp_path / "store", progress=False)
    with pytest.raises(InputError, match="VECTORS_FORMAT=gensim"):  # what the scripts call with VECTORS=...
        sources.open_vectors(str(path), tmp_path / "cache", 1 << 30)
    cfg = settings.load(config, [f"--VECTORS={path}"], environ={})
    assert cfg.VECTORS_FORMAT == "auto"
    with pytest.raises(InputError):
        sources.open_vectors(cfg.VECTORS, tmp_path / "cache", 1 << 30, cfg.VECTORS_FORMAT)
    assert not marker.exists() and not (tmp_path / "store").exists()


def test_only_naming_the_gensim_format_unpickles(evil, tmp_path):
    """What the option's help and docs/security.md warn of: --format gensim does load the pickle."""
    path, marker = evil
    with pytest.raises(InputError, match="cannot be loaded by gensim"):
        read_vectors(path, progress=False, format="gensim")
    assert marker.exists()


def test_vectors_format_is_a_checked_setting():
    assert settings.load(config, ["--VECTORS_FORMAT=gensim"], environ={}).VECTORS_FORMAT == "gensim"
    with pytest.raises(InputError, match="VECTORS_FORMAT='pickle' is not one of auto, text, word2vec-binary"):
        settings.load(config, ["--VECTORS_FORMAT=pickle"], environ={})

