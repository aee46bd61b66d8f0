"""Collect float32 rows piece by piece: in memory, or streamed into a ``.npy`` file on disk.

A GloVe text file has no row count, so ``np.lib.format.open_memmap`` (which needs the shape up
front) cannot take the rows as they come. Instead the rows are appended after a reserved
header, and the header is written once the count is known; the result is a normal ``.npy``
that ``np.load(mmap_mode="r")`` maps. Memory then holds one piece of rows at a time.
"""

import io

import numpy as np

_CHUNK_ROWS = 65536  # rows moved at a time when duplicates are dropped in place


def _header(count, dim):
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": (count, dim)})
    return out.getvalue()


class RowsSink:
    """``append`` pieces of rows, then ``finish`` returns the whole (count, dim) float32 matrix."""

    def __init__(self, path, dim):
        self.path, self.dim, self.count, self._pieces = path, dim, 0, []
        self._file = None
        if path is not None:
            # numpy pads the header to 64 bytes: for any count below 10**12 it has this length.
            self._reserved = len(_header(10**12, dim))
            self._file = open(path, "wb")
            self._file.write(b"\0" * self._reserved)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._file is not None:
            self._file.close()

    def append(self, matrix):
        matrix = np.ascontiguousarray(matrix, dtype="<f4")
        self.count += len(matrix)
        if self._file is None:
            self._pieces.append(matrix)
        else:
            self._file.write(matrix.data)

    def finish(self, keep=None):
        """The matrix, with only the rows ``keep`` (sorted) when given; mapped from disk with a path."""
        if self._file is None:
            matrix = np.concatenate(self._pieces) if self._pieces else np.empty((0, self.dim), np.float32)
            return matrix if keep is None else matrix[keep]
        count = self.count if keep is None else len(keep)
        header = _header(count, self.dim)
        if len(header) != self._reserved:  # cannot happen below 10**12 rows; never write a wrong file
            raise RuntimeError(f"npy header of {len(header)} bytes does not fit the {self._reserved} reserved")
        self._file.seek(0)
        self._file.write(header)
        self._file.close()
        if keep is not None:
            # Drop the duplicates in place, chunk by chunk: keep[i] >= i, so a chunk only reads
            # rows at or after the ones it overwrites. Plain reads and writes, not a mapping,
            # so memory (RSS included) holds one chunk and the rows between its first and last.
            row_bytes = self.dim * 4
            with open(self.path, "r+b") as f:
                for start in range(0, count, _CHUNK_ROWS):
                    chunk = keep[start:start + _CHUNK_ROWS]
                    first = int(chunk[0])
                    span = np.empty((int(chunk[-1]) + 1 - first, self.dim), dtype="<f4")
                    f.seek(self._reserved + first * row_bytes)
                    if f.readinto(span.data.cast("B")) != span.nbytes:
                        raise RuntimeError(f"{self.path} is shorter than the rows written into it")
                    f.seek(self._reserved + start * row_bytes)
                    f.write(span[chunk - first].data)
                f.truncate(self._reserved + count * row_bytes)
        return np.load(self.path, mmap_mode="r")
