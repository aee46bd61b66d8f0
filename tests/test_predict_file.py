"""``predict --file``: one text per line, exactly; line N of the file is text N of the output."""

import codecs

import pytest

from external_embeddings.text.text_files import file_lines, unescape
from external_embeddings.errors import InputError


def lines_of(tmp_path, data):
    path = tmp_path / "texts.txt"
    path.write_bytes(data)
    return list(file_lines(path))


def test_only_newline_splits_texts(tmp_path):
    # Real 20 Newsgroups posts hold form feeds; str.splitlines() also splits on these.
    data = "page one\x0cpage two\nfile\x1csep\nnext\x85line\nsep\u2028arator\n".encode("utf-8")
    assert lines_of(tmp_path, data) == [(1, "page one\x0cpage two"), (2, "file\x1csep"), (3, "next\x85line"),
                                        (4, "sep\u2028arator")]


def test_blank_lines_are_empty_texts_and_keep_the_numbering(tmp_path):
    assert lines_of(tmp_path, b"first\n\n   \nfourth") == [(1, "first"), (2, ""), (3, "   "), (4, "fourth")]


def test_bom_and_crlf_are_not_part_of_the_text(tmp_path):
    data = codecs.BOM_UTF8 + b"rocket orbit\r\nmoon\r\n"
    assert lines_of(tmp_path, data) == [(1, "rocket orbit"), (2, "moon")]


@pytest.mark.parametrize("line, text", [
    (r"two\nlines", "two\nlines"),
    (r"C:\\new", "C:\\new"),  # an escaped backslash, then a plain n
    (r"C:\temp\x", "C:\\temp\\x"),  # other backslashes stay as they are
    (r"end\\", "end\\"),
    (r"\\\n", "\\\n"),
])
def test_escapes(line, text):
    assert unescape(line) == text


def test_a_line_that_is_not_utf8_is_named(tmp_path):
    with pytest.raises(InputError, match=r"texts.txt:3: is not UTF-8"):
        lines_of(tmp_path, b"a\nb\ncaf\xe9\n")
