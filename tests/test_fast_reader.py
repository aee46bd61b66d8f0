"""The fast text reader (pyarrow's CSV reader) never accepts what the exact one refuses, nor differs from it.

Each input is read twice: as convert reads it (pyarrow for the pieces it takes, the exact
reader for the rest) and by the exact reader alone (np.loadtxt after Python's line handling).
Both must give the same words and the same float32 bits, or the same error.
"""

import numpy as np
import pytest

from external_embeddings.vectors import text_format as vectors_file
from external_embeddings.vectors.read import read_vectors
from external_embeddings.errors import InputError

NUMBERS = ["0.5", "1e-05", "1E5", "1e+05", "-.5", "+1", "+.5e-3", "1.", ".5", "-0", "00.5", "0", "nan", "NaN", "-nan",
           "inf", "-inf", "Infinity", "1e39", "-1e39", "1e-50", "1e400", "3.4028235e38", "3.4028236e38",
           "1.401298464324817e-45", "0x1p3", "0X10", "1_000", "1,5", "1.0.0", "1e", "e5", ".", "-", "+", "", "1d5",
           "0b1", "1e5.5", "--1", "\u0661", "\uff11", "1\t", "\t1", "1\x0b", "1\x0c", "\xa01", "1\xa0", "1\u2003",
           "\x001", "NULL", "null", "NA", "N/A", "#N/A", "None", "true", '"1"', "'1'", "1 ", " 1",
           # Long decimals: the nearest double is a float32 midpoint, so rounding straight to float32
           # would differ from np.loadtxt's double-then-float32 in the last bit.
           "1.00000005960464477539062500000001", "1.000000059604644775390625", "0.100000001490116119384765625",
           "3.14159265358979323846264338327950288419716939937510", "1" + "0" * 400, "0." + "0" * 400 + "1"]
WORDS = ["the", "NULL", "null", "NaN", "nan", "NA", "#N/A", "N/A", "None", "True", '""', '"', '"quoted"', 'a"b',
         "it's", "1.5", "1e5", "0", "-", "#", "#comment", "\\", "a\\nb", ",", "a,b", "x" * 10_000, "caf\u00e9",
         "\u00e9t\u00e9", "\u4e2d\u6587", "\U0001f600", ".\u00a0.\u00a0.", "a\u00a0", "\u00a0", "a\tb", "\t", "a\x0bb",
         "\x00", "\ufeffbom", "\u2028", ""]
BAD_BYTES = [b"caf\xe9", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xff", b"ab\xe2\x82"]


def exact(data, dim, lenient=False):
    """The exact reader's (words, rows) of one piece, or its error message."""
    try:
        words, matrix, _, _ = vectors_file._parse_piece("f.txt", data, 1, dim, False, lenient, True)
        return words, matrix
    except InputError as e:
        return str(e)


def assert_fast_agrees(data, dim):
    fast = vectors_file._arrow_rows(data, dim)
    if fast is None:
        return False  # the exact reader reads it, so nothing can differ
    slow = exact(data, dim)
    assert not isinstance(slow, str), f"pyarrow accepted what the exact reader refuses: {data[:80]!r}: {slow}"
    assert fast[0] == slow[0], data[:80]
    assert fast[1].dtype == np.float32 and fast[1].shape == slow[1].shape
    np.testing.assert_array_equal(fast[1].view(np.uint32), slow[1].view(np.uint32), err_msg=repr(data[:80]))
    return True


def test_a_clean_piece_is_read_by_pyarrow():
    assert assert_fast_agrees(b"the 0.1 -0.2 3e-05\nof 1 2 3\n", 3)
    assert assert_fast_agrees(b"the 0.1 -0.2 3e-05\nof 1 2 3", 3)  # the file's last line may lack its line end


@pytest.mark.parametrize("number", NUMBERS)
def test_any_number_field_reads_as_np_loadtxt_reads_it(number):
    for line in (f"w {number} 0.25", f"w 0.25 {number}"):
        assert_fast_agrees(f"the 0.5 0.5\n{line}\nof 1 2\n".encode(), 2)


@pytest.mark.parametrize("word", WORDS)
def test_any_word_reads_as_the_exact_reader_reads_it(word):
    assert_fast_agrees(f"the 0.5 0.5\n{word} 0.25 -1\nof 1 2\n".encode(), 2)


@pytest.mark.parametrize("raw", BAD_BYTES)
def test_bytes_that_are_not_utf8_are_left_to_the_exact_reader(raw):
    data = b"the 0.5 0.5\n" + raw + b" 0.25 -1\n"
    assert vectors_file._arrow_rows(data, 2) is None
    assert "not UTF-8" in exact(data, 2) or "cut off" in exact(data, 2)


@pytest.mark.parametrize("data", [
    b"the 0.5 0.5\r\nof 1 2\r\n", b"the 0.5 0.5\rof 1 2\n", b"the 0.5 0.5\n\nof 1 2\n", b"\nthe 0.5 0.5\n",
    b"the 0.5 0.5 \nof 1 2\n", b"the 0.5 0.5\t\nof 1 2\n", b"the 0.5 0.5\xc2\xa0\nof 1 2\n", b"the 0.5 0.5\n \n",
    b"new york 0.5 0.5\nof 1 2\n", b"the 0.5\nof 1 2\n", b"the 0.5 0.5 0.5\nof 1 2\n", b"the  0.5\n",
    b"the 0.5  0.5\n", b" 0.5 0.5\n", b"the 0.5 0.5\nof 1", b"2 2\nthe 0.5 0.5\n", b"the\t0.5\t0.5\n",
])
def test_unusual_lines_read_as_the_exact_reader_reads_them(data):
    assert_fast_agrees(data, 2)


def test_random_fields_never_make_the_readers_differ():
    """Short random fields from the characters numbers are made of, and a few others."""
    rng = np.random.default_rng(0)
    alphabet = list("0123456789.eE+-_ xXpnaifNIF\t\u00a0\"#,") + ["inf", "nan", "e-", "00"]
    agreed = 0
    for _ in range(3000):
        field = "".join(rng.choice(alphabet, size=int(rng.integers(1, 8))))
        agreed += assert_fast_agrees(f"the 0.5 0.5\nw {field} 0.25\n".encode(), 2)
    assert agreed > 100  # many fields did go through pyarrow


def test_the_same_file_converts_alike_by_both_readers(tmp_path, monkeypatch):
    """A whole file, pieces and a header included: the fast reader changes nothing in the result."""
    rng = np.random.default_rng(1)
    values = rng.normal(0, 1, (500, 4)).astype(np.float32)
    lines = [f"w{i} " + " ".join(f"{v:.9g}" for v in row) for i, row in enumerate(values)]
    lines[7] = "new york 1 2 3 4"  # this piece goes to the exact reader
    lines[300] = lines[3]  # a duplicate
    path = tmp_path / "v.vec"
    path.write_text(f"{len(lines)} 4\n" + "\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(vectors_file, "_PIECE_BYTES", 2000)
    fast = read_vectors(path, progress=False)
    monkeypatch.setattr(vectors_file, "_arrow_rows", lambda data, dim: None)
    slow = read_vectors(path, progress=False)
    assert fast.words == slow.words and fast.duplicates == slow.duplicates == 1 and fast.header == slow.header
    np.testing.assert_array_equal(fast.matrix.view(np.uint32), slow.matrix.view(np.uint32))


def test_index_words_are_the_kept_words_encoded_and_hashed(tmp_path, monkeypatch):
    """read_vectors(index=True) carries each kept word's UTF-8 bytes and hash, duplicates dropped."""
    from external_embeddings.store.embedding_store import word_hashes

    words = [f"w{i}" for i in range(300)] + ["caf\u00e9", "\u4e2d\u6587", "w5", "\U0001f600", "w7"]
    path = tmp_path / "v.txt"
    path.write_text("".join(f"{w} {i} 1\n" for i, w in enumerate(words)), encoding="utf-8")
    monkeypatch.setattr(vectors_file, "_PIECE_BYTES", 500)  # several pieces, hashed one at a time
    plain = read_vectors(path, progress=False)
    indexed = read_vectors(path, progress=False, index=True)
    assert plain.encoded is None and plain.hashes is None
    assert indexed.words == plain.words and len(indexed.words) == len(words) - 2 and indexed.duplicates == 2
    assert indexed.encoded == [w.encode("utf-8") for w in indexed.words]
    np.testing.assert_array_equal(indexed.hashes, word_hashes(indexed.encoded))
    assert indexed.matrix[indexed.words.index("w5"), 0] == 5  # the first row of a repeated word
