"""Tell the vectors formats apart, and read the two binary ones: word2vec ``.bin`` and gensim files.

word2vec binary is read by our own code, not gensim's ``load_word2vec_format``: gensim holds the
whole matrix in memory and fails on a damaged file with a bare ``ValueError`` or ``EOFError``,
while this reader streams pieces of rows to disk and names the row and byte offset of what is
wrong. A gensim ``KeyedVectors.save`` file is a pickle only gensim can read, so gensim reads it
(memory-mapped), and its rows are copied out in chunks. Loading a pickle runs whatever code the
file names, so a gensim file is read only when the user asks for that format by name
(``--format gensim``, ``VECTORS_FORMAT=gensim``), never because its first bytes look like one.
"""

import numpy as np

from ..errors import InputError

_PIECE_BYTES = 8 << 20  # bytes of a word2vec binary file read at a time
_MAX_WORD_BYTES = 4096  # a "word" longer than this is a damaged file, not a word
_GENSIM_CHUNK_ROWS = 65536


def _fail(path, problem, fix, line=None):
    raise InputError(path, problem, fix, line=line)


def _two_ints(line):
    fields = line.split()
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return int(fields[0]), int(fields[1])
    return None


def detect_format(path, head):
    """"text" or "word2vec-binary", from the first bytes of the (gunzipped) file; a pickle is an error.

    A pickle (gensim's ``save``) starts with byte 0x80, which no UTF-8 text does. It is refused
    here rather than read: unpickling runs any code the file holds, and a file named
    ``crawl-300d-2M.vec`` may be anything. A word2vec binary file has a ``count dim`` line and then
    raw float32 bytes after the first word, which are not all the characters a text row's numbers
    are written with.
    """
    if head[:1] == b"\x80":
        _fail(path, "starts like a pickle (a gensim KeyedVectors.save file), and loading a pickle runs any code "
              "it holds, so it is not read unless asked for by name",
              "only if you trust the file, give --format gensim (in the scripts: VECTORS_FORMAT=gensim)")
    first, _, rest = head.partition(b"\n")
    header = _two_ints(first.decode("latin-1"))
    if header and header[1] > 0 and rest:
        line = rest.split(b"\n", 1)[0]
        # A .bin file must show a whole text row to count as text; any other name, only text bytes.
        named_bin = ".bin" in path.suffixes[-2:]
        return "text" if _is_text_row(line, header[1] if named_bin else 0) else "word2vec-binary"
    return "text"


def _is_text_row(line, dim):
    """Whether ``line`` reads as text: UTF-8 without control characters, and more than ``dim`` fields.

    Raw float32 bytes almost never pass: their sign/exponent bytes (0x3c-0x3e, 0xbc-0xbe for
    typical values) are not valid UTF-8 in those places, or a 0x0a byte cuts the line short.
    A text row with a bad number still passes, so it gets the text reader's precise error.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(c < " " and c not in "\t\r" for c in text) and len(text.split()) > dim


def binary_pieces(path, stream, head, lenient):
    """Header, dimension and the pieces (words, rows, skipped rows, bytes) of a word2vec binary file.

    Each row is the word's UTF-8 bytes, a space, ``dim`` little-endian float32, and optionally a
    newline (GoogleNews has none, gensim writes one), exactly as gensim reads them.
    """
    first, newline, _ = head.partition(b"\n")
    header = _two_ints(first.decode("latin-1")) if newline else None
    if not header or not header[1]:
        _fail(path, f"does not start with a 'count dim' line ({first[:40]!r}) as word2vec binary files do",
              "download the file again, or give --format if it is another format", 1)
    return header, header[1], _binary_rows(path, stream, head[len(first) + 1:], len(first) + 1, header, lenient)


def _binary_rows(path, stream, buf, offset, header, lenient):
    from .streams import read_block

    count, dim = header
    row_bytes, row = 4 * dim, 0  # ``offset``: the file's byte offset of buf[0]
    while row < count:
        block = read_block(path, stream, _PIECE_BYTES)
        buf += block
        words, starts, places, skipped, pos = [], [], [], 0, 0
        while row < count:
            space = buf.find(b" ", pos, pos + _MAX_WORD_BYTES)
            if space < 0:
                if len(buf) - pos >= _MAX_WORD_BYTES:
                    _fail(path, f"row {row + 1:,} at byte offset {offset + pos:,} has no word ending in a space "
                          f"within {_MAX_WORD_BYTES:,} bytes: not word2vec binary, or damaged",
                          "download the file again, or give --format if it is another format")
                break
            if space + 1 + row_bytes > len(buf):
                break
            raw = buf[pos:space].lstrip(b"\n")  # the newline that may end the previous row
            try:
                word = raw.decode("utf-8")
                if not word or "\n" in word or "\r" in word:
                    _fail(path, f"row {row + 1:,} at byte offset {offset + pos:,} has an empty word or one "
                          f"holding a line break ({raw[:40]!r})", "download the file again")
                words.append(word)
                starts.append(space + 1)
                places.append(offset + pos)
            except UnicodeDecodeError:
                if not lenient:
                    _fail(path, f"row {row + 1:,} at byte offset {offset + pos:,} has a word that is not UTF-8 "
                          f"({raw[:40]!r})", "convert with --lenient to skip such rows")
                skipped += 1
            pos = space + 1 + row_bytes
            row += 1
        if not block and row < count:
            _fail(path, f"ends in the middle of row {row + 1:,} (byte offset {offset + pos:,}) of the {count:,} "
                  "its header announces: the file looks cut off", "download or extract it again")
        view = memoryview(buf)
        matrix = np.frombuffer(b"".join(view[s:s + row_bytes] for s in starts), dtype="<f4").reshape(-1, dim)
        view.release()
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            _fail(path, f"row for {words[i][:40]!r} (byte offset {places[i]:,}) holds nan or inf",
                  "fix or delete that row")
        yield words, matrix, skipped, pos
        buf, offset = buf[pos:], offset + pos
    rest = buf + read_block(path, stream, 1 << 16)
    if rest.strip(b"\n\r\t "):
        _fail(path, f"holds more bytes after the {count:,} rows its header announces (byte offset {offset:,})",
              "the header's count is wrong or the file is damaged: download it again", 1)


def gensim_pieces(path):
    """Dimension and the pieces of a file written by gensim's ``KeyedVectors.save`` (or a model's).

    This unpickles the file, which runs any code it holds: called only for ``format="gensim"``.
    """
    try:
        from gensim.models import KeyedVectors
    except ImportError:
        _fail(path, "is a gensim file (a pickle), and reading it needs gensim", "pip install gensim")
    try:
        loaded = KeyedVectors.load(str(path), mmap="r")
    except Exception as e:  # noqa: BLE001 - unpickling a damaged file raises almost any type
        _fail(path, f"cannot be loaded by gensim ({type(e).__name__}: {str(e)[:200]})",
              "save it again with KeyedVectors.save, keeping its .vectors.npy file beside it")
    kv = loaded if isinstance(loaded, KeyedVectors) else getattr(loaded, "wv", None)
    if not isinstance(kv, KeyedVectors):
        _fail(path, f"holds a {type(loaded).__name__}, not gensim KeyedVectors", "save model.wv instead")
    words, vectors = list(kv.index_to_key), kv.vectors
    if vectors.ndim != 2 or len(words) != len(vectors) or not len(words):
        _fail(path, f"holds {len(words):,} words but a {vectors.shape} matrix", "save the KeyedVectors again")
    bad = next((i for i, w in enumerate(words) if not isinstance(w, str) or not w or "\n" in w or "\r" in w), None)
    if bad is not None:
        _fail(path, f"word {bad + 1:,} ({words[bad]!r}) is not a non-empty string without line breaks",
              "fix the keys and save again")

    def pieces():
        for start in range(0, len(words), _GENSIM_CHUNK_ROWS):
            matrix = np.asarray(vectors[start:start + _GENSIM_CHUNK_ROWS], dtype=np.float32)
            finite = np.isfinite(matrix).all(axis=1)
            if not finite.all():
                i = start + int(np.flatnonzero(~finite)[0])
                _fail(path, f"row {i + 1:,}, for {words[i][:40]!r}, holds nan or inf", "fix or delete that row")
            yield words[start:start + _GENSIM_CHUNK_ROWS], matrix, 0, matrix.nbytes

    return vectors.shape[1], pieces()
