"""Read a vectors file of any format into its words and a float32 matrix: the one entry point.

Tells text from word2vec binary by the file's first bytes (or takes the format given; a gensim
file, a pickle, is read only when given by name, see formats.py), hands the stream to that
format's reader, and collects the pieces they yield: rows to memory or to a ``.npy`` file,
duplicates dropped, counts checked against the header.
"""

import contextlib
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import InputError
from ..store.embedding_store import word_hashes
from .formats import binary_pieces, detect_format, gensim_pieces
from .rows_file import RowsSink
from .streams import open_stream
from .text_format import text_pieces


@dataclass
class VectorsFile:
    """What a vectors file held, plus what was dropped on the way."""

    words: list
    matrix: np.ndarray
    duplicates: int = 0  # later repeats of a word; the first one is kept
    skipped_lines: int = 0  # lines skipped because they were not UTF-8 (only with lenient=True)
    header: tuple = None  # (count, dim) when the file had a word2vec/fastText header
    # With read_vectors(index=True), what write_store needs of the words, made while later pieces parse:
    encoded: list = None  # the words as UTF-8
    hashes: np.ndarray = None  # store.word_hashes of them


def _fail(path, problem, fix, line=None):
    raise InputError(path, problem, fix, line=line)


def read_vectors(path, lenient=False, progress=True, format="auto", rows_path=None, index=False):
    """Parse a vectors file of any format; any bad row is an ``InputError`` naming file and line or offset.

    Pieces of a large text file are parsed by one thread per core: the parse is CPU-bound, and
    conversion is the one step that every new vectors file waits for. With ``rows_path`` the
    rows stream into that ``.npy`` file and the matrix comes back mapped from it, so memory
    stays bounded whatever the file's size; without it they are kept in memory. With ``index``
    the words also come back encoded and hashed for ``write_store`` (``convert`` asks for it).
    ``format="gensim"`` unpickles the file, which runs any code it holds: only for trusted files.
    """
    path = Path(path)
    stream, head = open_stream(path)
    with contextlib.closing(stream):
        format = detect_format(path, head) if format == "auto" else format
        if format == "text":
            header, header_line, dim, parsed = text_pieces(path, stream, head, lenient)
        elif format == "word2vec-binary":
            header, dim, parsed = binary_pieces(path, stream, head, lenient)
            header_line = 1
        elif format == "gensim":
            header, header_line, dim, parsed = None, None, *gensim_pieces(path)
        else:
            _fail(path, f"unknown format {format!r}", "use auto, text, word2vec-binary or gensim")
        # Progress counts the bytes read, which only a plain word2vec or text file has a total of.
        total = None if format == "gensim" or isinstance(stream, gzip.GzipFile) else path.stat().st_size
        words, encoded, hashes, skipped = [], [], [], 0
        with RowsSink(rows_path, dim) as sink, tqdm(total=total, unit="B", unit_scale=True, desc=f"Reading {path.name}",
                                                     disable=None if progress else True) as bar:
            for piece_words, matrix, piece_skipped, size in parsed:
                words += piece_words
                if index:  # here the words wait for the threads parsing the next pieces; in
                    # write_store they would be encoded and hashed after the parse, when nothing else runs
                    piece_encoded = [word.encode("utf-8") for word in piece_words]
                    encoded += piece_encoded
                    hashes.append(word_hashes(piece_encoded))
                sink.append(matrix)
                skipped += piece_skipped
                bar.update(size)
            if not words:
                if skipped:
                    _fail(path, f"holds no UTF-8 lines ({skipped:,} skipped)", "re-save the file as UTF-8")
                _fail(path, "holds a header but no vectors", "give a file with one 'word v1 v2 ...' row per line")
            if header and header[0] != len(words) + skipped:  # a line skipped as not UTF-8 was still a row
                _fail(path, f"header says {header[0]:,} rows but the file holds {len(words) + skipped:,}",
                      "the file is cut off or its header is wrong: download it again, or fix the first line",
                      header_line)
            # Keep each word's first row: a dict built from the reversed list keeps the first index.
            first_rows = dict(zip(reversed(words), range(len(words) - 1, -1, -1)))
            duplicates = len(words) - len(first_rows)
            keep = None
            if duplicates:
                keep = np.sort(np.fromiter(first_rows.values(), dtype=np.int64, count=len(first_rows)))
                words = [words[i] for i in keep]
            if index:
                hashes = np.concatenate(hashes)
                encoded, hashes = (encoded, hashes) if keep is None else ([encoded[i] for i in keep], hashes[keep])
            else:
                encoded = hashes = None
            matrix = sink.finish(keep)
    return VectorsFile(words, matrix, duplicates, skipped, header, encoded, hashes)
