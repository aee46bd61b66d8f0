"""Bad vectors files: each ends in the right words and matrix, or in one InputError naming file:line."""

import gzip
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import DIM, ROOT, vector_rows, write_vectors
from external_embeddings.errors import InputError
from external_embeddings.sources import convert_file
from external_embeddings.store import EmbeddingStore
from external_embeddings.vectors.read import read_vectors


def read(path, **options):
    return read_vectors(path, progress=False, **options)


def error(path, **options):
    """The message of the InputError that reading ``path`` raises."""
    with pytest.raises(InputError) as raised:
        read(path, **options)
    return str(raised.value)


def row(word, values):
    return word + " " + " ".join(str(v) for v in values)


def write_lines(path, lines, end="\n"):
    path.write_bytes("".join(line + end for line in lines).encode("utf-8"))
    return path


def cli(*args):
    return subprocess.run([sys.executable, "-m", "external_embeddings", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def cli_error(done):
    """The one 'error: ' line a failed command printed; fails the test on a traceback or exit 0."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


GOOD = [row("the", [0.1, 0.2, 0.3]), row("of", [0.4, 0.5, 0.6]), row("and", [0.7, 0.8, 0.9])]


# ## Words with spaces


@pytest.mark.parametrize("header", [False, True])
def test_words_with_spaces_or_nbsp_stay_whole_and_the_store_finds_them(tmp_path, header):
    rows = vector_rows()
    # glove.840B's ". . ." has U+00A0 between the dots; the others hold real spaces. Together
    # they add DIM extra spaces, which once fooled the separator count of a file with a header.
    odd = [".\u00a0.\u00a0.", "new york", "a b c d e f g h"]
    rows = rows[:3] + [(w, rows[10 + i][1]) for i, w in enumerate(odd)] + rows[3:]
    source = write_vectors(tmp_path / "spaces.txt", rows, header=header)
    store, parsed = convert_file(source, tmp_path / "store", progress=False)
    assert parsed.words == [w for w, _ in rows]
    ids = store.ids(odd + [". . .", "new"])
    assert ids[3:].tolist() == [0, 0]  # only the exact words: NBSP is not a space, "new" is not "new york"
    np.testing.assert_allclose(store.gather(ids[:3]), [v for w, v in rows if w in odd], atol=1e-6)


# ## Duplicates


def test_duplicate_words_keep_the_first_and_are_counted(tmp_path):
    lines = GOOD + [row("the", [9, 9, 9]), row("of", [8, 8, 8]), row("the", [7, 7, 7])]
    parsed = read(write_lines(tmp_path / "dups.txt", lines))
    assert parsed.words == ["the", "of", "and"] and parsed.duplicates == 3
    np.testing.assert_allclose(parsed.matrix, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])


def test_convert_command_reports_the_duplicates(tmp_path):
    source = write_lines(tmp_path / "dups.txt", GOOD + [row("the", [9, 9, 9]), row("and", [8, 8, 8])])
    done = cli("convert", source, tmp_path / "store", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "Converted 3 words of dimension 3" in done.stdout and "2 duplicate words dropped" in done.stdout
    store = EmbeddingStore.open(tmp_path / "store", verify=True)
    np.testing.assert_allclose(store.gather(store.ids(["the"])), [[0.1, 0.2, 0.3]])


# ## Headers


def test_a_header_is_read_and_gives_the_same_vectors_as_no_header(tmp_path):
    plain = read(write_vectors(tmp_path / "plain.txt"))
    headed = read(write_vectors(tmp_path / "headed.vec", header=True))
    assert plain.header is None and headed.header == (34, DIM)
    assert headed.words == plain.words
    np.testing.assert_array_equal(headed.matrix, plain.matrix)


def test_a_headerless_first_row_of_numbers_is_a_word_not_a_header(tmp_path):
    parsed = read(write_lines(tmp_path / "numeric.txt", ["1 0.1 0.2 0.3", "2 0.4 0.5 0.6"]))
    assert parsed.header is None and parsed.words == ["1", "2"]
    np.testing.assert_allclose(parsed.matrix, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    one_d = read(write_lines(tmp_path / "one_d.txt", ["1 2", "the 0.5"]))  # a 1-d file starting with word "1"
    assert one_d.header is None and one_d.words == ["1", "the"]


@pytest.mark.parametrize("first, expected", [
    ("5 3", "header says 5 rows but the file holds 3"),
    ("2 3", "header says 2 rows but the file holds 3"),
    ("3 4", "header says dimension 4 but the rows hold 3 values"),
    ("3 2", "header says dimension 2 but the rows hold 3 values"),
])
def test_a_header_that_disagrees_with_the_rows_is_an_error_on_line_1(tmp_path, first, expected):
    message = error(write_lines(tmp_path / "bad_header.vec", [first] + GOOD))
    assert message.startswith(f"{tmp_path / 'bad_header.vec'}:1: ") and expected in message


def test_header_errors_point_at_the_header_line_past_blank_lines(tmp_path):
    message = error(write_lines(tmp_path / "blank.vec", ["", "4 3", ""] + GOOD))
    assert "blank.vec:2: header says 4 rows but the file holds 3" in message


def test_a_header_alone_is_an_error(tmp_path):
    assert "holds a header but no vectors" in error(write_lines(tmp_path / "only.vec", ["3 300"]))


# ## Trailing spaces, CRLF, blank lines


MESSY = {
    "crlf": lambda lines: "".join(line + "\r\n" for line in lines),
    "trailing spaces": lambda lines: "".join(line + "  \n" for line in lines),
    "trailing tabs and nbsp": lambda lines: "".join(line + "\t\u00a0\n" for line in lines),
    "blank lines": lambda lines: "\n\n" + "".join(line + "\n \n\t\n" for line in lines) + "\n\n",
    "no final newline": lambda lines: "\n".join(lines),
    "trailing space without final newline": lambda lines: "\n".join(lines) + " ",
    "a byte order mark": lambda lines: "\ufeff" + "".join(line + "\n" for line in lines),
    "all at once": lambda lines: "\ufeff\r\n" + "".join(line + " \r\n\r\n" for line in lines) + " ",
}


@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("mess", MESSY)
def test_messy_line_ends_give_the_clean_files_words_and_matrix(tmp_path, mess, header):
    clean = read(write_vectors(tmp_path / "clean.txt", header=header))
    lines = (tmp_path / "clean.txt").read_text(encoding="utf-8").splitlines()
    (tmp_path / "messy.txt").write_bytes(MESSY[mess](lines).encode("utf-8"))
    messy = read(tmp_path / "messy.txt")
    assert messy.words == clean.words and messy.header == clean.header
    np.testing.assert_array_equal(messy.matrix, clean.matrix)


def test_line_numbers_count_the_files_real_lines_past_blank_lines_and_crlf(tmp_path):
    text = "\r\n\r\nthe 0.1 0.2 0.3\r\n\r\nof 0.4 0.5\r\nand 0.7 0.8 0.9\r\n"  # the short row is line 5
    (tmp_path / "crlf.txt").write_bytes(text.encode())
    message = error(tmp_path / "crlf.txt")
    assert message.startswith(f"{tmp_path / 'crlf.txt'}:5: row has 2 values, expected 3")


# ## Rows with the wrong values


@pytest.mark.parametrize("bad, expected", [
    (row("of", [0.4, 0.5]), "row has 2 values, expected 3 (starts 'of 0.4 0.5')"),
    ("of", "row has 0 values, expected 3 (starts 'of')"),
    (row("of", [0.4, 0.5, 0.6, 0.7]), "row has 4 values, expected 3 (starts 'of 0.4 0.5 0.6 0.7')"),
    (row("of", [0.4, "0.5x", 0.6]), "cannot read the number '0.5x' in the row for 'of'"),
    (row("of", [0.4, "0,5", 0.6]), "cannot read the number '0,5' in the row for 'of'"),
    (row("of", [0.4, 0.5, "--"]), "cannot read the number '--' in the row for 'of'"),
])
def test_a_bad_row_is_an_error_naming_file_line_and_token(tmp_path, bad, expected):
    lines = GOOD[:2] + [bad] + GOOD[2:]
    message = error(write_lines(tmp_path / "bad.txt", lines))
    assert message.startswith(f"{tmp_path / 'bad.txt'}:3: ") and expected in message
    assert "fix or delete that row" in message


def test_a_bad_row_deep_in_a_large_file_gets_its_own_line_number(tmp_path, monkeypatch):
    from external_embeddings.vectors import text_format as vectors_file

    monkeypatch.setattr(vectors_file, "_PIECE_BYTES", 100)  # the bad row lies in a later piece
    lines = [row(f"w{i}", [i, 0.5, 0.25]) for i in range(30)]
    lines[17] = row("w17", [0.1, "x", 0.3])
    assert "bad.txt:18: cannot read the number 'x' in the row for 'w17'" in error(write_lines(tmp_path / "bad.txt",
                                                                                              lines))


@pytest.mark.parametrize("piece_bytes", [1, 7, 16, 40])
def test_blank_lines_at_piece_boundaries_are_skipped(tmp_path, monkeypatch, piece_bytes):
    from external_embeddings.vectors import text_format as vectors_file

    lines = [row(f"w{i}", [i, 0.5, 0.25]) for i in range(6)]
    clean = read(write_lines(tmp_path / "clean.txt", lines))
    monkeypatch.setattr(vectors_file, "_PIECE_BYTES", piece_bytes)
    messy = read(write_lines(tmp_path / "messy.txt", ["", lines[0], "", "", *lines[1:4], "", *lines[4:], ""]))
    assert messy.words == clean.words
    np.testing.assert_array_equal(messy.matrix, clean.matrix)
    assert error(write_lines(tmp_path / "bad.txt", ["", lines[0], "", "w9 0.1 x 0.3"])).startswith(
        f"{tmp_path / 'bad.txt'}:4: cannot read the number 'x'")


def test_threads_read_the_same_as_one_thread(tmp_path, monkeypatch):
    """Big files are parsed piece by piece on several threads; the result and errors must not change."""
    from external_embeddings.vectors import text_format as vectors_file

    lines = [row(f"w{i}", [i, 0.5, -0.25]) for i in range(300)] + [row("w7", [9, 9, 9])]
    lines[100] = row("new york", [1, 2, 3])  # one piece goes to the exact reader
    good = write_lines(tmp_path / "good.txt", lines)
    lines[250] = row("w250", [0.1, "x", 0.3])
    bad = write_lines(tmp_path / "bad.txt", lines)
    one = read(good), error(bad)
    monkeypatch.setattr(vectors_file, "_PARALLEL_BYTES", 0)
    monkeypatch.setattr(vectors_file, "_PIECE_BYTES", 500)
    assert vectors_file._threads(1) > 1
    many = read(good)
    assert many.duplicates == one[0].duplicates == 1 and many.words == one[0].words
    np.testing.assert_array_equal(many.matrix, one[0].matrix)
    assert error(bad) == one[1] and "bad.txt:251: cannot read the number 'x'" in one[1]


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e39"])
def test_nan_or_inf_never_enters_a_matrix(tmp_path, value):
    message = error(write_lines(tmp_path / "nan.txt", GOOD[:1] + [row("of", [0.4, value, 0.6])] + GOOD[2:]))
    assert message.startswith(f"{tmp_path / 'nan.txt'}:2: row for 'of' holds nan or inf")


# ## Encodings


def latin1_file(path):
    path.write_bytes(b"the 0.1 0.2 0.3\ncaf\xe9 0.4 0.5 0.6\nand 0.7 0.8 0.9\n")
    return path


def test_bytes_that_are_not_utf8_are_an_error_with_the_line(tmp_path):
    message = error(latin1_file(tmp_path / "latin1.txt"))
    assert message.startswith(f"{tmp_path / 'latin1.txt'}:2: holds bytes that are not UTF-8")
    assert "--lenient" in message


def test_lenient_skips_and_counts_lines_that_are_not_utf8(tmp_path):
    parsed = read(latin1_file(tmp_path / "latin1.txt"), lenient=True)
    assert parsed.words == ["the", "and"] and parsed.skipped_lines == 1
    np.testing.assert_allclose(parsed.matrix, [[0.1, 0.2, 0.3], [0.7, 0.8, 0.9]])
    # A skipped line was still a row: the header's count includes it.
    (tmp_path / "headed.vec").write_bytes(b"3 3\n" + (tmp_path / "latin1.txt").read_bytes())
    assert read(tmp_path / "headed.vec", lenient=True).words == ["the", "and"]


def test_lenient_on_a_file_with_no_utf8_line_is_an_error(tmp_path):
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe 0.1\n\xfa 0.2\n")
    assert "holds no UTF-8 lines (2 skipped)" in error(tmp_path / "binary.txt", lenient=True)


def test_convert_command_fails_on_latin1_and_skips_with_lenient(tmp_path):
    source = latin1_file(tmp_path / "latin1.txt")
    line = cli_error(cli("convert", source, tmp_path / "store", "--quiet"))
    assert line.startswith(f"error: {source}:2: holds bytes that are not UTF-8") and "--lenient" in line
    assert not (tmp_path / "store").exists()
    done = cli("convert", source, tmp_path / "store", "--quiet", "--lenient")
    assert done.returncode == 0, done.stderr
    assert "Converted 2 words" in done.stdout and "1 lines skipped" in done.stdout


# ## Empty, cut off, the wrong kind of file


@pytest.mark.parametrize("content", [b"", b"\n\n", b" \r\n\t\n"])
def test_an_empty_file_is_an_error(tmp_path, content):
    (tmp_path / "empty.txt").write_bytes(content)
    assert error(tmp_path / "empty.txt") == f"{tmp_path / 'empty.txt'}: is empty; " \
        "give a vectors file with one 'word v1 v2 ...' row per line"


def test_a_file_cut_off_in_the_middle_of_a_row_says_so(tmp_path):
    full = write_vectors(tmp_path / "full.txt").read_bytes()
    cut = full[:full.index(b"\n", 1000) - 20]
    (tmp_path / "cut.txt").write_bytes(cut)
    last_line = cut.count(b"\n") + 1
    message = error(tmp_path / "cut.txt")
    assert message.startswith(f"{tmp_path / 'cut.txt'}:{last_line}: ends in the middle of a row")
    assert "cut off" in message


def test_a_file_cut_off_in_the_middle_of_a_character_says_so(tmp_path):
    (tmp_path / "cut.txt").write_bytes("the 0.1 0.2\ncaf\u00e9".encode()[:-1])
    assert error(tmp_path / "cut.txt").startswith(f"{tmp_path / 'cut.txt'}:2: ends in the middle of a character")


def test_a_zip_says_which_members_it_holds(tmp_path):
    with zipfile.ZipFile(tmp_path / "glove.6B.zip", "w") as archive:
        for name in ("glove.6B.50d.txt", "glove.6B.100d.txt"):
            archive.writestr(name, "\n".join(GOOD))
    message = error(tmp_path / "glove.6B.zip")
    assert "glove.6B.zip: is a zip archive (members: glove.6B.50d.txt, glove.6B.100d.txt)" in message
    assert "extract" in message
    line = cli_error(cli("convert", tmp_path / "glove.6B.zip", tmp_path / "store", "--quiet"))
    assert "members: glove.6B.50d.txt, glove.6B.100d.txt" in line and not (tmp_path / "store").exists()


def test_a_damaged_zip_or_one_of_many_members_is_an_error(tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    message = error(tmp_path / "broken.zip")
    assert message.startswith(f"{tmp_path / 'broken.zip'}: is a damaged zip archive") and "download it again" in message
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as archive:
        for i in range(10):
            archive.writestr(f"v{i}.txt", "the 0.1\n")
    assert "(members: v0.txt, v1.txt, v2.txt, v3.txt, v4.txt, v5.txt, v6.txt, v7.txt and 2 more)" in error(
        tmp_path / "many.zip")


def test_an_unreadable_file_is_an_error(tmp_path, monkeypatch):
    source = write_lines(tmp_path / "locked.txt", GOOD)

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(source), "open", denied)
    assert error(source) == f"{source}: cannot be read (Permission denied); check that the file is readable"


def test_a_gzip_is_read_and_a_damaged_one_is_an_error(tmp_path):
    packed = gzip.compress("\n".join(GOOD).encode())
    (tmp_path / "v.txt.gz").write_bytes(packed)
    assert read(tmp_path / "v.txt.gz").words == ["the", "of", "and"]
    (tmp_path / "cut.txt.gz").write_bytes(packed[:-12])
    assert "cut.txt.gz: is a damaged gzip file" in error(tmp_path / "cut.txt.gz")


def test_a_missing_file_or_a_folder_is_an_error(tmp_path):
    assert "nope.txt: no such vectors file" in error(tmp_path / "nope.txt")
    assert f"{tmp_path}: is a folder, not a vectors file" in error(tmp_path)


def test_convert_command_errors_are_one_line_with_file_and_line(tmp_path):
    source = write_lines(tmp_path / "short.txt", GOOD[:1] + [row("of", [0.4])] + GOOD[2:])
    line = cli_error(cli("convert", source, tmp_path / "store", "--quiet"))
    assert line == f"error: {source}:2: row has 1 values, expected 3 (starts 'of 0.4'); fix or delete that row"
    assert not (tmp_path / "store").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


# The CLI in a subprocess whose os.mkdir refuses every folder under a given one with the given
# error: tests run as root, who may write anywhere, so a read-only or vanished parent is simulated.
REFUSING_MKDIR = """
import os, sys
from external_embeddings.cli import main
real, refused, error = os.mkdir, sys.argv[1], getattr(__builtins__, sys.argv[2])
def mkdir(path, *args, **kwargs):
    if os.fspath(path).startswith(refused):
        raise error(13 if error is PermissionError else 2, os.strerror(13 if error is PermissionError else 2), path)
    return real(path, *args, **kwargs)
os.mkdir = mkdir
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("error, reason", [("PermissionError", "Permission denied"),
                                           ("FileNotFoundError", "No such file or directory")])
@pytest.mark.parametrize("depth", ["parent", "new"])
def test_convert_command_into_a_folder_it_cannot_make_or_write_is_one_line(tmp_path, error, reason, depth):
    """The target's parent exists but refuses the temporary folder, or the parent itself cannot be made."""
    source = write_lines(tmp_path / "v.txt", GOOD)
    parent = tmp_path / "locked"
    parent.mkdir()
    target = parent / "store" if depth == "parent" else parent / "new" / "store"
    done = subprocess.run([sys.executable, "-c", REFUSING_MKDIR, str(parent) + "/", error, "convert", str(source),
                           str(target), "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert cli_error(done) == f"error: {target}: cannot be created ({reason}); give a store folder in a place " \
        "you can write to"
    assert list(parent.iterdir()) == []


def test_convert_command_into_a_read_only_folder_is_one_line(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the test above simulates it")
    source = write_lines(tmp_path / "v.txt", GOOD)
    (tmp_path / "locked").mkdir(mode=0o500)
    try:
        line = cli_error(cli("convert", source, tmp_path / "locked" / "store", "--quiet"))
    finally:
        (tmp_path / "locked").chmod(0o700)
    assert line.startswith(f"error: {tmp_path / 'locked' / 'store'}: cannot be created (Permission denied)")


def test_convert_command_under_a_file_is_one_line(tmp_path):
    source = write_lines(tmp_path / "v.txt", GOOD)
    (tmp_path / "somefile").write_text("not a folder")
    line = cli_error(cli("convert", source, tmp_path / "somefile" / "store", "--quiet"))
    assert line.startswith(f"error: {tmp_path / 'somefile' / 'store'}: cannot be created: {tmp_path / 'somefile'} is a file")


def test_convert_command_without_quiet_still_prints_only_the_error_when_stderr_is_no_terminal(tmp_path):
    source = write_lines(tmp_path / "bad.txt", GOOD[:1] + [row("of", [0.4, "0.5x", 0.6])] + GOOD[2:])
    line = cli_error(cli("convert", source, tmp_path / "store"))
    assert line == f"error: {source}:2: cannot read the number '0.5x' in the row for 'of'; fix or delete that row"


# ## Dimensions that differ from what a store or a model expects


def test_a_model_trained_on_vectors_of_another_dimension_is_refused(store):
    from external_embeddings.text import tokenizer
    from external_embeddings.predictor import check_manifest

    manifest = {"kind": "external", "tokenizer": tokenizer.SETTINGS, "sequence_length": 150, "labels": ["a", "b"],
                "store": {"fingerprint": store.fingerprint, "dim": 50, "path": "/elsewhere/glove50"}}
    with pytest.raises(InputError) as raised:
        check_manifest(manifest, "models/a/manifest.json", store)
    message = str(raised.value)
    assert message.startswith("models/a/manifest.json: was trained with store /elsewhere/glove50")
    assert "dim 50" in message and f"dim {DIM}" in message and "retrain" in message
    check_manifest(dict(manifest, store=store.describe()), "models/a/manifest.json", store)  # its own store: fine


def test_a_matrix_that_does_not_fit_the_words_is_refused_before_anything_is_written(tmp_path):
    from external_embeddings.store import write_store

    with pytest.raises(InputError, match=r"3 words but a \(2, 4\) matrix"):
        write_store(["a", "b", "c"], np.zeros((2, 4), dtype=np.float32), tmp_path / "store", {"file": "x.txt"})
    assert not (tmp_path / "store").exists()
