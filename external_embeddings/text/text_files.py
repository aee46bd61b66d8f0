"""Files of one text per line, as ``predict --file`` and ``score --input`` read them."""

import codecs
import re

from ..errors import InputError

_ESCAPE = re.compile(r"\\([\\n])")


def unescape(line):
    """A line of a --file as its text: ``\\n`` is a newline and ``\\\\`` a backslash; other backslashes stay."""
    return _ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else "\\", line)


def file_lines(path):
    """Yield (line number, text) of a --file: split on "\\n" alone, as "one text per line" says.

    ``str.splitlines`` would also split on form feeds and other separators that real posts hold,
    so the file is read as bytes. A UTF-8 BOM and a CRLF line end are not part of the text.
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            raw = raw.removesuffix(b"\n").removesuffix(b"\r")
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield number, unescape(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise InputError(path, "is not UTF-8", "re-save it as UTF-8", number) from None
