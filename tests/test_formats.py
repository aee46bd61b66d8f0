"""The formats users hold: word2vec binary (.bin, .bin.gz), fastText .vec, gensim KeyedVectors files.

gensim writes the reference files; each must give gensim's own words and vectors, and each
damaged one a single InputError that says where (row, byte offset) and leaves nothing behind.
"""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors

from conftest import vector_rows, write_vectors
from external_embeddings.sources import convert_file
from external_embeddings.store import EmbeddingStore
from test_bad_vectors import cli, cli_error, error, read


def keyed_vectors(rows=None):
    rows = vector_rows() if rows is None else rows
    kv = KeyedVectors(len(rows[0][1]))
    kv.add_vectors([w for w, _ in rows], np.array([v for _, v in rows], dtype=np.float32))
    return kv


def assert_same(parsed, kv):
    assert parsed.words == list(kv.index_to_key)
    np.testing.assert_array_equal(parsed.matrix, kv.vectors)


def googlenews_bytes(kv, newline=False):
    """word2vec binary as GoogleNews ships it: no newline after a row (gensim writes one)."""
    rows = [w.encode() + b" " + kv[w].astype("<f4").tobytes() + (b"\n" if newline else b"") for w in kv.index_to_key]
    return f"{len(kv)} {kv.vector_size}\n".encode() + b"".join(rows)


@pytest.fixture
def binary_file(tmp_path):
    kv = keyed_vectors()
    kv.save_word2vec_format(str(tmp_path / "v.bin"), binary=True)
    return tmp_path / "v.bin", kv


def test_word2vec_binary_from_gensim_reads_as_gensim_does(binary_file):
    path, kv = binary_file
    assert_same(read(path), kv)
    assert_same(read(path), KeyedVectors.load_word2vec_format(str(path), binary=True))
    assert read(path).header == (len(kv), kv.vector_size)


def test_googlenews_layout_and_bin_gz_read_the_same(tmp_path):
    kv = keyed_vectors()
    (tmp_path / "news.bin").write_bytes(googlenews_bytes(kv))
    (tmp_path / "news.bin.gz").write_bytes(gzip.compress(googlenews_bytes(kv, newline=True)))
    assert_same(read(tmp_path / "news.bin"), kv)
    assert_same(read(tmp_path / "news.bin.gz"), kv)
    # The name does not matter: the bytes after the header tell binary from text.
    (tmp_path / "news.dat").write_bytes(googlenews_bytes(kv))
    assert_same(read(tmp_path / "news.dat"), kv)


def test_word2vec_binary_pieces_streamed_to_disk_match(tmp_path, monkeypatch):
    from external_embeddings.vectors import formats

    kv = keyed_vectors()
    (tmp_path / "news.bin").write_bytes(googlenews_bytes(kv))
    monkeypatch.setattr(formats, "_PIECE_BYTES", 50)  # rows split across many reads
    parsed = read(tmp_path / "news.bin", rows_path=tmp_path / "rows.npy")
    assert_same(parsed, kv)
    assert isinstance(parsed.matrix, np.memmap)


def test_convert_command_makes_a_store_from_binary_and_gensim_files(tmp_path, binary_file):
    path, kv = binary_file
    kv.save(str(tmp_path / "v.kv"))
    for source, name, given in ((path, "from_bin", []), (tmp_path / "v.kv", "from_kv", ["--format", "gensim"])):
        done = cli("convert", source, tmp_path / name, "--quiet", *given)
        assert done.returncode == 0, done.stderr
        store = EmbeddingStore.open(tmp_path / name, verify=True)
        ids = store.ids(kv.index_to_key)
        np.testing.assert_array_equal(store.gather(ids), kv.vectors)


def test_fasttext_vec_with_its_header_reads_as_gensim_does(tmp_path):
    kv = keyed_vectors()
    kv.save_word2vec_format(str(tmp_path / "crawl.vec"), binary=False)
    assert (tmp_path / "crawl.vec").read_text().startswith(f"{len(kv)} {kv.vector_size}\n")
    parsed = read(tmp_path / "crawl.vec")
    gensim_read = KeyedVectors.load_word2vec_format(str(tmp_path / "crawl.vec"), binary=False)
    assert parsed.header == (len(kv), kv.vector_size) and parsed.words == gensim_read.index_to_key
    np.testing.assert_array_equal(parsed.matrix, gensim_read.vectors)


@pytest.mark.parametrize("sep_limit", [10 * 1024**2, 0])  # vectors inside the pickle, or in .vectors.npy
def test_gensim_keyedvectors_file_reads_back(tmp_path, sep_limit):
    kv = keyed_vectors()
    kv.save(str(tmp_path / "v.kv"), sep_limit=sep_limit)
    assert (tmp_path / "v.kv.vectors.npy").exists() == (sep_limit == 0)
    assert_same(read(tmp_path / "v.kv", format="gensim"), kv)


def test_a_saved_word2vec_model_gives_its_keyed_vectors(tmp_path):
    from gensim.models import Word2Vec

    model = Word2Vec([["orbit", "moon", "rocket"], ["moon", "team"]], vector_size=4, min_count=1, seed=1)
    model.save(str(tmp_path / "w2v.model"))
    assert_same(read(tmp_path / "w2v.model", format="gensim"), model.wv)


def test_format_option_overrides_detection(tmp_path, binary_file):
    path, kv = binary_file
    assert_same(read(path, format="word2vec-binary"), kv)
    assert error(path, format="text").startswith(f"{path}:")  # read as text: an error with a line
    assert "unknown format 'csv'" in error(path, format="csv")


# ## Bad binary files: one error with the row and byte offset, nothing written


def test_a_cut_off_binary_file_names_the_row_and_offset(tmp_path):
    kv = keyed_vectors()
    full = googlenews_bytes(kv)
    row_bytes = len(kv.index_to_key[0]) + 1 + 4 * kv.vector_size
    header = len(f"{len(kv)} {kv.vector_size}\n")
    (tmp_path / "cut.bin").write_bytes(full[:header + row_bytes + 10])
    message = error(tmp_path / "cut.bin")
    assert f"ends in the middle of row 2 (byte offset {header + row_bytes:,})" in message and "cut off" in message


def test_a_header_count_that_disagrees_with_the_rows_is_an_error(tmp_path):
    kv = keyed_vectors()
    body = googlenews_bytes(kv).split(b"\n", 1)[1]
    (tmp_path / "more.bin").write_bytes(f"{len(kv) + 1} {kv.vector_size}\n".encode() + body)
    assert f"ends in the middle of row {len(kv) + 1}" in error(tmp_path / "more.bin")
    (tmp_path / "fewer.bin").write_bytes(f"{len(kv) - 1} {kv.vector_size}\n".encode() + body)
    message = error(tmp_path / "fewer.bin")
    assert message.startswith(f"{tmp_path / 'fewer.bin'}:1: holds more bytes after the {len(kv) - 1} rows")


def test_a_bad_header_is_an_error_on_line_1(tmp_path):
    (tmp_path / "bad.bin").write_bytes(b"three hundred\n" + np.ones(8, "<f4").tobytes())
    message = error(tmp_path / "bad.bin", format="word2vec-binary")
    assert message.startswith(f"{tmp_path / 'bad.bin'}:1: does not start with a 'count dim' line")


def test_a_word_that_is_not_utf8_is_an_error_or_skipped_with_lenient(tmp_path):
    kv = keyed_vectors()
    data = googlenews_bytes(kv).replace(b"moon ", b"mo\xf6n ", 1)
    (tmp_path / "latin1.bin").write_bytes(data)
    offset = data.index(b"mo\xf6n")
    assert f"row 3 at byte offset {offset:,} has a word that is not UTF-8 (b'mo\\xf6n')" in error(tmp_path / "latin1.bin")
    parsed = read(tmp_path / "latin1.bin", lenient=True)
    assert parsed.skipped_lines == 1 and "moon" not in parsed.words and len(parsed.words) == len(kv) - 1
    np.testing.assert_array_equal(parsed.matrix, np.delete(kv.vectors, 2, axis=0))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_in_a_binary_row_is_an_error_with_the_offset(tmp_path, value):
    kv = keyed_vectors()
    kv.vectors[4, 1] = value
    data = googlenews_bytes(kv)
    (tmp_path / "nan.bin").write_bytes(data)
    offset = data.index(kv.index_to_key[4].encode() + b" ")
    assert f"row for 'nasa' (byte offset {offset:,}) holds nan or inf" in error(tmp_path / "nan.bin")


def test_a_damaged_or_foreign_gensim_file_is_an_error(tmp_path):
    kv = keyed_vectors()
    kv.save(str(tmp_path / "v.kv"), sep_limit=0)
    (tmp_path / "v.kv.vectors.npy").unlink()
    assert "cannot be loaded by gensim (FileNotFoundError" in error(tmp_path / "v.kv", format="gensim")
    kv.save(str(tmp_path / "cut.kv"))
    (tmp_path / "cut.kv").write_bytes((tmp_path / "cut.kv").read_bytes()[:200])
    assert "cut.kv: cannot be loaded by gensim" in error(tmp_path / "cut.kv", format="gensim")
    (tmp_path / "dict.pkl").write_bytes(pickle.dumps({"not": "vectors"}, protocol=4))
    assert "dict.pkl: cannot be loaded by gensim" in error(tmp_path / "dict.pkl", format="gensim")
    from gensim.corpora import Dictionary

    Dictionary([["orbit", "moon"]]).save(str(tmp_path / "words.dict"))
    assert "holds a Dictionary, not gensim KeyedVectors" in error(tmp_path / "words.dict", format="gensim")
    kv.vectors[2, 0] = np.nan
    kv.save(str(tmp_path / "nan.kv"))
    assert "row 3, for 'moon', holds nan or inf" in error(tmp_path / "nan.kv", format="gensim")


def test_a_fasttext_model_is_named_and_its_vectors_pointed_to(tmp_path):
    """fastText's own .bin (a whole model: words, subword buckets, settings) is no vectors file;
    the error says what it is and how to get its vectors, not that it is badly encoded text."""
    from gensim.models import FastText
    from gensim.models.fasttext import save_facebook_model

    model = FastText([["orbit", "moon", "rocket"], ["doctor", "nurse"]] * 3, vector_size=4, min_count=1, epochs=1,
                     bucket=64, workers=1, seed=1)
    save_facebook_model(model, str(tmp_path / "model.bin"))  # the format fasttext.train_* writes
    assert (tmp_path / "model.bin").read_bytes()[:4] == (793712314).to_bytes(4, "little")
    message = error(tmp_path / "model.bin")
    assert message.startswith(f"{tmp_path / 'model.bin'}: is a fastText model (fastText's own binary format, "
                              "version 12), not a vectors file; give the .vec file")
    assert "fasttext print-word-vectors model.bin" in message and "UTF-8" not in message
    (tmp_path / "cc.en.300.bin").write_bytes((793712314).to_bytes(4, "little") + (12).to_bytes(4, "little") + b"\0" * 64)
    line = cli_error(cli("convert", tmp_path / "cc.en.300.bin", tmp_path / "store", "--quiet"))
    assert "cc.en.300.bin: is a fastText model" in line and not (tmp_path / "store").exists()


def test_convert_command_on_a_bad_binary_prints_one_line_and_leaves_nothing(tmp_path):
    kv = keyed_vectors()
    (tmp_path / "cut.bin").write_bytes(googlenews_bytes(kv)[:-7])
    line = cli_error(cli("convert", tmp_path / "cut.bin", tmp_path / "stores" / "s", "--quiet"))
    assert "cut.bin: ends in the middle of row" in line
    assert list((tmp_path / "stores").iterdir()) == []  # neither the store nor a temporary folder


def test_convert_file_leaves_no_temporary_folder_and_drops_duplicates_on_disk(tmp_path):
    rows = vector_rows()
    rows = rows + [(rows[0][0], rows[1][1]), (rows[5][0], rows[2][1])]  # two later repeats
    kv_path = tmp_path / "dups.txt"
    kv_path.write_text("".join(w + " " + " ".join(f"{x:.6f}" for x in v) + "\n" for w, v in rows))
    store, parsed = convert_file(kv_path, tmp_path / "out" / "store", progress=False)
    assert parsed.duplicates == 2 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["store"]
    in_memory = read(kv_path)
    assert parsed.words == in_memory.words == [w for w, _ in rows[:-2]]
    np.testing.assert_array_equal(store.vectors, in_memory.matrix)


@pytest.mark.parametrize("duplicates", [False, True])
def test_a_float32_store_takes_the_streamed_rows_file_instead_of_writing_it_again(tmp_path, monkeypatch, duplicates):
    from external_embeddings.store import embedding_store as store_module

    rows = vector_rows()
    if duplicates:
        rows = rows + [(rows[0][0], rows[1][1])]
    saved = []
    save = np.save
    monkeypatch.setattr(store_module.np, "save", lambda path, array: (saved.append(Path(path).name), save(path, array)))
    store, parsed = convert_file(write_vectors(tmp_path / "v.txt", rows), tmp_path / "store", progress=False)
    assert "vectors.npy" not in saved and "index_rows.npy" in saved
    assert EmbeddingStore.open(tmp_path / "store", verify="full").fingerprint == store.fingerprint
    in_memory = read(tmp_path / "v.txt")
    np.testing.assert_array_equal(store.vectors, in_memory.matrix)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "v.txt"]
    # Another dtype is written from the rows, which are left to be removed with their folder.
    saved.clear()
    half, _ = convert_file(tmp_path / "v.txt", tmp_path / "half", dtype="float16", progress=False)
    assert "vectors.npy" in saved and half.vectors.dtype == np.float16
    np.testing.assert_array_equal(half.vectors, in_memory.matrix.astype(np.float16))


def test_duplicates_are_dropped_on_disk_chunk_by_chunk(tmp_path, monkeypatch):
    from external_embeddings.vectors import rows_file

    monkeypatch.setattr(rows_file, "_CHUNK_ROWS", 3)
    rows = vector_rows()
    rows = rows[:5] + [(rows[1][0], rows[9][1]), (rows[2][0], rows[8][1])] + rows[5:] + [(rows[0][0], rows[7][1])]
    source = write_vectors(tmp_path / "dups.txt", rows)
    on_disk = read(source, rows_path=tmp_path / "rows.npy")
    in_memory = read(source)
    assert on_disk.duplicates == in_memory.duplicates == 3 and on_disk.words == in_memory.words
    np.testing.assert_array_equal(on_disk.matrix, in_memory.matrix)
    expected = [[float(f"{x:.6f}") for x in v] for _, v in vector_rows()]  # as write_vectors wrote them
    np.testing.assert_array_equal(in_memory.matrix, np.float32(expected))
