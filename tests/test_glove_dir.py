"""GLOVE_DIR as the original scripts had it: a folder of glove.6B.<dim>d.txt, EMBEDDING_DIM picks one."""

import pytest

import config
from conftest import vector_rows, write_vectors
from external_embeddings import settings, sources
from external_embeddings.errors import InputError


def load(*argv, environ=None):
    return settings.load(config, list(argv), environ={} if environ is None else environ)


def refusal(*argv, environ=None):
    with pytest.raises(InputError) as raised:
        load(*argv, environ=environ)
    return str(raised.value)


@pytest.fixture
def glove_dir(tmp_path):
    folder = tmp_path / "glove"
    folder.mkdir()
    write_vectors(folder / "glove.6B.8d.txt")
    write_vectors(folder / "glove.6B.3d.txt", [(w, v[:3]) for w, v in vector_rows()])
    (folder / "README").write_text("not a glove file")
    return folder


def test_glove_dir_and_embedding_dim_pick_the_file(tmp_path, glove_dir):
    cfg = load(f"--GLOVE_DIR={glove_dir}", "--EMBEDDING_DIM=8")
    assert cfg.VECTORS == str(glove_dir / "glove.6B.8d.txt")
    store = sources.open_vectors(cfg.VECTORS, tmp_path / "cache", 2**31)
    assert store.dim == 8 and store.count == 34
    cfg = load(environ={"KEE_GLOVE_DIR": str(glove_dir), "KEE_EMBEDDING_DIM": "3"})
    assert cfg.VECTORS == str(glove_dir / "glove.6B.3d.txt")


def test_a_missing_dimension_is_one_error_listing_the_glove_files_there(glove_dir):
    message = refusal(f"--GLOVE_DIR={glove_dir}")  # EMBEDDING_DIM defaults to 100, as in the original
    assert message == (f"settings: GLOVE_DIR={str(glove_dir)!r} holds no glove.6B.100d.txt (EMBEDDING_DIM=100); "
                       "it holds glove.6B.3d.txt, glove.6B.8d.txt; set EMBEDDING_DIM to 3 or 8")


def test_a_folder_with_only_the_zip_says_to_unzip_it(tmp_path):
    (tmp_path / "glove.6B.zip").write_bytes(b"PK")
    message = refusal(f"--GLOVE_DIR={tmp_path}")
    assert "it holds glove.6B.zip; unzip glove.6B.zip into" in message
    (tmp_path / "glove.6B.zip").unlink()
    assert "it holds no glove files; put GloVe's files there" in refusal(f"--GLOVE_DIR={tmp_path}")


def test_glove_dir_and_vectors_together_are_an_error_naming_both(glove_dir):
    message = refusal(f"--GLOVE_DIR={glove_dir}", f"--VECTORS={glove_dir / 'glove.6B.8d.txt'}", "--EMBEDDING_DIM=8")
    assert message.startswith(f"settings: GLOVE_DIR={str(glove_dir)!r} and VECTORS=")
    assert message.endswith("are both set; set only one of GLOVE_DIR and VECTORS")


def test_glove_dir_must_be_a_folder(glove_dir):
    message = refusal(f"--GLOVE_DIR={glove_dir / 'glove.6B.8d.txt'}")
    assert "GLOVE_DIR=" in message and "is not a folder" in message and message.endswith("change GLOVE_DIR")


def test_embedding_dim_without_glove_dir_is_an_error_not_ignored():
    assert "EMBEDDING_DIM=300 only picks a file in GLOVE_DIR, which is empty" in refusal("--EMBEDDING_DIM=300")
    assert "EMBEDDING_DIM=0 must be >= 1" in refusal("--EMBEDDING_DIM=0")


def test_without_glove_dir_vectors_is_as_before(vectors_file):
    assert load().VECTORS == "" and load(f"--VECTORS={vectors_file}").VECTORS == str(vectors_file)
