"""Read a GloVe, word2vec or fastText text vectors file into a word list and a float32 matrix.

Each row is ``word v1 ... vdim``, separated by single spaces; the last ``dim`` fields are the
vector and the rest is the word, so tokens holding spaces or U+00A0 (glove.840B) stay whole.
A row whose extra fields are all written like vector values (``0.1``, ``1e-05``) has too many
values, though, and is an error. A word2vec/fastText ``count dim`` header is optional; when
present, its count and dim must match the rows.

The file is read in pieces of whole lines, never by a Python loop per value. A clean piece
(every line ``word`` and ``dim`` numbers, nothing unusual) is parsed by pyarrow's CSV reader,
on one thread per core; any other piece, and any piece pyarrow refuses, by the exact reader
(``np.loadtxt`` after Python's own line handling), which gives the ``file:line`` errors. Both
give the same words and the same float32 values for every piece both accept (see ``_arrow_rows``).
"""

import collections
import functools
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import InputError
from .streams import read_block

_PIECE_BYTES = 8 << 20  # bytes parsed at a time: keeps memory flat and the progress bar moving
_PARALLEL_BYTES = 32 << 20  # below this, a file is parsed by one thread
_LOADTXT_WHERE = re.compile(r"at row (\d+), column (\d+)")
# A vector value as files write them: a decimal point or an exponent. A word part such as "95"
# ("windows 95") does not match, so it stays part of the word.
_VALUE = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+(?=[eE]))([eE][-+]?\d+)?")


def _fail(path, problem, fix, line=None):
    raise InputError(path, problem, fix, line=line)


def _decode_lines(path, data, lenient, first_line=1):
    """Decode UTF-8 and split into lines; returns (lines, skipped line count)."""
    try:
        return data.decode("utf-8").split("\n"), 0
    except UnicodeDecodeError as e:
        if not lenient:
            line = data.count(b"\n", 0, e.start) + first_line
            if e.reason == "unexpected end of data":
                _fail(path, "ends in the middle of a character: the file looks cut off",
                      "download or extract it again", line)
            _fail(path, f"holds bytes that are not UTF-8 ({data[e.start:e.end + 3]!r})",
                  "re-save the file as UTF-8, or convert with --lenient to skip such lines", line)
    # Lenient: decode line by line and blank out (skip) the ones that are not UTF-8.
    lines, skipped = [], 0
    for raw in data.split(b"\n"):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append("")
            skipped += 1
    return lines, skipped


def _header(lines):
    """Return (count, dim) when the first row is a word2vec/fastText header, else None.

    A header is exactly two integers, so a headerless first row such as ``1 0.1 0.2 0.3`` is a
    word. Only in a file of 1-d rows is a first row like ``1 2`` (word "1", value 2) a row too.
    """
    fields = lines[0].split(" ")
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    count, dim = int(fields[0]), int(fields[1])
    if dim != 1 and len(lines) > 1 and lines[1].count(" ") == 1:
        return None
    return count, dim


def _short_row_error(path, lines, numbers, spaces, dim, ends_cleanly):
    """Raise for the first row with fewer than ``dim`` values, if there is one."""
    short = np.flatnonzero(spaces < dim)
    if not len(short):
        return
    i = short[0]
    if i == len(lines) - 1 and not ends_cleanly:
        _fail(path, f"ends in the middle of a row ({spaces[i]} of {dim} values): the file looks cut off",
              "download or extract it again", numbers[i])
    _fail(path, f"row has {spaces[i]} values, expected {dim} (starts {lines[i][:40]!r})",
          "fix or delete that row", numbers[i])


def _parse_numbers(path, lines, words, numbers, dim):
    """The last ``dim`` fields of every row as float32, by np.loadtxt."""
    try:
        return np.loadtxt(lines, dtype=np.float32, delimiter=" ", comments=None, usecols=range(1, dim + 1), ndmin=2)
    except ValueError as e:
        where = _LOADTXT_WHERE.search(str(e))
        if not where:
            raise
        # numpy counts rows from 0 and columns from 1; the check on the field guards
        # against a numpy that counts rows from 1.
        row, column = int(where.group(1)), int(where.group(2)) - 1
        if row >= len(lines) or lines[row].split(" ")[column] not in str(e):
            row -= 1
        word, field = words[row], lines[row].split(" ")[column]
        _fail(path, f"cannot read the number {field[:40]!r} in the row for {word[:40]!r}",
              "fix or delete that row", numbers[row])


def _parse_piece(path, data, first_line, dim, header, lenient, is_last):
    """Words and float32 rows of one piece of the file: whole lines, starting at ``first_line``.

    ``header`` says the piece starts with the header line, which is skipped.
    Returns (words, matrix, skipped lines).
    """
    lines, skipped = _decode_lines(path, data, lenient, first_line)
    if lines[-1] == "":
        lines.pop()
    # Trailing spaces, CRLF and blank lines are not content: strip them, keep file line numbers.
    # Most files have none, and scanning the bytes for them is much cheaper than the strip.
    # A blank line may also open a piece, where no "\n\n" shows it: hence the look for "".
    # One look at each line's last character costs less than searching the bytes for " \n" etc.
    clean = not skipped and "" not in lines and b"\r" not in data \
        and not {line[-1] for line in lines}.intersection(" \t\xa0")
    if not clean:
        numbers = np.array([i for i, line in enumerate(lines, start=first_line) if line.strip()], dtype=np.int64)
        lines = [lines[i - first_line].rstrip() for i in numbers]
    else:
        numbers = np.arange(first_line, first_line + len(lines))
    if header:
        lines, numbers = lines[1:], numbers[1:]
    if not lines:
        return [], np.empty((0, dim), dtype=np.float32), skipped, len(data)

    # Count separators row by row only when the total says some row is not "word + dim values".
    spaces = None
    separators = data.count(b" ") - (1 if header else 0) if clean else -1  # a clean header is "count dim"
    ends_cleanly = not is_last or data.endswith(b"\n")
    if separators != len(lines) * dim:
        spaces = np.fromiter((line.count(" ") for line in lines), dtype=np.int64, count=len(lines))
        _short_row_error(path, lines, numbers, spaces, dim, ends_cleanly)
    words = [line[:line.find(" ")] for line in lines]
    if spaces is not None:
        for i in np.flatnonzero(spaces > dim):  # the word holds spaces: the vector is the last dim fields
            parts = lines[i].rsplit(" ", dim)
            if all(_VALUE.fullmatch(extra) for extra in parts[0].split(" ")[1:]):
                _fail(path, f"row has {spaces[i]} values, expected {dim} (starts {lines[i][:40]!r})",
                      "fix or delete that row", numbers[i])
            words[i], lines[i] = parts[0], "_ " + " ".join(parts[1:])
    try:
        matrix = _parse_numbers(path, lines, words, numbers, dim)
    except ValueError as e:
        if isinstance(e, InputError):
            raise
        # np.loadtxt failed on a row with too few fields, which the totals above could not see.
        spaces = np.fromiter((line.count(" ") for line in lines), dtype=np.int64, count=len(lines))
        _short_row_error(path, lines, numbers, spaces, dim, ends_cleanly)
        _fail(path, f"cannot be read as vectors ({e})", "give a file of 'word v1 v2 ...' rows")

    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        _fail(path, f"row for {words[row]!r} holds nan or inf (or a value beyond float32's range)",
              "fix or delete that row", numbers[row])
    return words, matrix, skipped, len(data)


def _pieces(path, stream, first, size):
    """(whole lines, is last) of consecutive pieces, about ``size`` bytes each, as bytearrays.

    The file is read piece by piece, so memory holds a few pieces, never the whole file. Only
    the last piece may end without a line end. Each piece is read into its own buffer after the
    partial line the previous read left, so its bytes are copied once.
    """
    rest = first
    while True:
        piece = bytearray(len(rest) + size)
        piece[:len(rest)] = rest
        with memoryview(piece) as view:
            got = read_block(path, stream, size, into=view[len(rest):])
        filled = len(rest) + got
        if not got:
            if rest:
                yield bytearray(rest), True
            return
        end = piece.rfind(b"\n", 0, filled) + 1
        if not end:  # a line longer than a block: read on
            rest = bytes(piece[:filled])
            continue
        rest = bytes(piece[end:filled])
        del piece[end:]
        yield piece, False


@functools.lru_cache(maxsize=4)
def _csv_options(dim):
    """pyarrow CSV options for rows of ``word v1 ... vdim``: nothing quoted, nothing null, no blank line."""
    import pyarrow as pa
    from pyarrow import csv

    names = ["word", *(f"v{i}" for i in range(dim))]
    # Doubles, cast to float32 by numpy as np.loadtxt does: parsing straight to float32 would
    # round a few long decimals differently (once to float32, not first to the nearest double).
    types = {"word": pa.string(), **{name: pa.float64() for name in names[1:]}}
    # Blocks of 2 MB took ~10% less CPU here than one block per 8 MB piece (caches); the piece's
    # threads, not pyarrow's, run pieces at once.
    return {"read_options": csv.ReadOptions(column_names=names, use_threads=False, block_size=2 << 20),
            "parse_options": csv.ParseOptions(delimiter=" ", quote_char=False, escape_char=False, double_quote=False,
                                              newlines_in_values=False, ignore_empty_lines=False),
            "convert_options": csv.ConvertOptions(column_types=types, null_values=[], strings_can_be_null=False,
                                                  quoted_strings_can_be_null=False, check_utf8=True)}


def _arrow_rows(data, dim):
    """(words, float32 rows) of a piece whose every line is ``word`` and ``dim`` numbers, else None.

    pyarrow's CSV reader (C++) parses such a piece in about two thirds of ``np.loadtxt``'s CPU
    time (~1.5 s against ~2.3 s per 100,000 rows of 300d here) and releases the GIL, so pieces
    parse on several threads at once, without worker processes pickling their rows back. It is
    a library's parser rather than our own: number syntax and correct rounding are its job.

    It is used only where it cannot differ from the exact reader: a piece with a carriage
    return, a blank line, a row of another field count (a word holding spaces, a short row,
    trailing spaces), bytes that are not UTF-8, a field that is not a number, or a value that is
    nan, inf or beyond float32 returns None, and the exact reader then reads it (and names the
    line of any error). Numbers go through a double, as in ``np.loadtxt``, so the float32 values
    are the same bits.
    """
    import pyarrow as pa
    from pyarrow import csv

    if not data or b"\r" in data:  # pyarrow would take a lone CR for a line end, Python does not
        return None
    try:
        table = csv.read_csv(pa.py_buffer(data), **_csv_options(dim))
    except pa.ArrowException:
        return None
    if table.num_columns != dim + 1 or any(column.null_count for column in table.columns):
        return None
    words = table.column(0).to_pylist()
    matrix = np.empty((table.num_rows, dim), dtype=np.float32)
    start = 0
    for batch in table.drop_columns(["word"]).to_batches():  # one per block of the piece
        # One C++ call turns the columns into rows (to_numpy() on a column would import pandas).
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused below as np.loadtxt's rows are
            matrix[start:start + batch.num_rows] = batch.to_tensor(row_major=True).to_numpy()
        start += batch.num_rows
    if not np.isfinite(matrix).all():
        return None
    return words, matrix


def _threads(size):
    """Threads that parse pieces at once: one per core for a big file, one for a small one."""
    return 1 if size < _PARALLEL_BYTES else min(os.cpu_count() or 1, 8)


def ordered_map(function, jobs, threads):
    """``map(function, jobs)`` in order, by ``threads`` threads with a few jobs in flight.

    Unlike ``Executor.map``, which queues every job at once, at most two jobs per thread wait, so
    memory holds a few pieces of the file whatever its size. ``function`` should release the
    GIL (pyarrow and numpy do) for the threads to run at once.
    """
    if threads <= 1:
        yield from map(function, jobs)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending = collections.deque()
        try:
            for job in jobs:
                pending.append(pool.submit(function, job))
                if len(pending) > 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # an error, or a reader that stopped early: do not parse the rest
            for future in pending:
                future.cancel()


def text_pieces(path, stream, head, lenient):
    """Header, dimension and the parsed pieces (words, rows, skipped lines, bytes) of a text file."""
    # The header and the dimension come from the first rows: the dimension is what most of them
    # have (a few rows may have more fields because their word holds spaces).
    prefix = head[:1 << 20].decode("utf-8", "replace").split("\n")[:1001]
    first = [(n, line.strip()) for n, line in enumerate(prefix, start=1) if line.strip()]
    header = _header([line for _, line in first])
    header_line = first[0][0] if header else None
    rows = first[1:] if header else first
    if not rows:
        _fail(path, "holds a header but no vectors", "give a file with one 'word v1 v2 ...' row per line")
    dim = Counter(line.count(" ") for _, line in rows).most_common(1)[0][0]
    if header and header[1] != dim:
        _fail(path, f"header says dimension {header[1]:,} but the rows hold {dim:,} values",
              "fix the first line, or download the file again", header_line)
    if dim < 1:
        _fail(path, "has rows without numbers", "give a file of 'word v1 v2 ...' rows", rows[0][0])

    def fast(job):
        piece, is_last, first_piece = job
        if first_piece and header:  # the fast path only skips a header on line 1; the exact reader any other
            return job, _arrow_rows(piece[piece.find(b"\n") + 1:], dim) if header_line == 1 else None
        return job, _arrow_rows(piece, dim)

    def parsed():
        pieces = ((piece, is_last, i == 0) for i, (piece, is_last) in
                  enumerate(_pieces(path, stream, head, _PIECE_BYTES)))
        line = 1  # the file's line number of the piece's first line, which only the exact reader needs
        for (piece, is_last, first_piece), rows in ordered_map(fast, pieces, threads):
            if rows is None:
                yield _parse_piece(path, bytes(piece), line, dim, header and first_piece, lenient, is_last)
                line += piece.count(b"\n")
            else:
                yield *rows, 0, len(piece)
                line += len(rows[0]) + bool(header and first_piece)

    threads = _threads(path.stat().st_size)
    return header, header_line, dim, parsed()
