"""Open a vectors file of any format as a binary stream: gunzipped, checked, its first bytes read.

Every format's reader starts here, so a missing, unreadable, zipped, empty or damaged file is the
same one error whichever format it was meant to be.
"""

import codecs
import gzip
import struct
import zipfile
import zlib

from ..errors import InputError


# A fastText model (``model.bin`` from fasttext.train_supervised/train_unsupervised, or ``cc.en.300.bin``)
# starts with this little-endian int32 and then its format version (fastText's FASTTEXT_FILEFORMAT_MAGIC_INT32).
FASTTEXT_MAGIC = struct.pack("<i", 793712314)


def _fail(path, problem, fix, line=None):
    raise InputError(path, problem, fix, line=line)


def open_stream(path):
    """The file as a binary stream, gunzipped when it is a gzip; (stream, first bytes).

    A zip, a missing or unreadable file and an empty one are an ``InputError`` here, so every
    format's reader starts from a readable stream.
    """
    if not path.exists():
        _fail(path, "no such vectors file", "check the path")
    if path.is_dir():
        _fail(path, "is a folder, not a vectors file", "give the .txt/.vec file inside it")
    try:
        stream = path.open("rb")
        magic = stream.read(4)
    except OSError as e:  # permissions, a vanished network drive: not a bug to show as a traceback
        _fail(path, f"cannot be read ({e.strerror or e})", "check that the file is readable")
    if magic == b"PK\x03\x04":
        stream.close()
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as e:
            _fail(path, f"is a damaged zip archive ({e})", "download it again")
        members = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        _fail(path, f"is a zip archive (members: {members})",
              "extract the vectors file you want and give its path")
    stream.seek(0)
    if magic[:2] == b"\x1f\x8b":  # gzip is read as is: fastText ships .vec.gz, GoogleNews .bin.gz
        stream = gzip.GzipFile(fileobj=stream, mode="rb")
    head = read_block(path, stream, 1 << 16)
    if head.startswith(codecs.BOM_UTF8):  # Windows editors add one; it would stick to the first word
        head = head[len(codecs.BOM_UTF8):]
    if head[:4] == FASTTEXT_MAGIC:  # a model, not vectors: its bytes would otherwise read as bad UTF-8 text
        version = struct.unpack("<i", head[4:8])[0] if len(head) >= 8 else "unknown"
        _fail(path, f"is a fastText model (fastText's own binary format, version {version}), not a vectors file",
              "give the .vec file that fastText wrote beside it, or write one: fasttext print-word-vectors "
              f"{path.name} < words.txt > vectors.vec (one word a line in words.txt)")
    if not head.strip() and len(head) < 1 << 16:  # nothing but blank lines
        _fail(path, "is empty", "give a vectors file with one 'word v1 v2 ...' row per line")
    return stream, head


def read_block(path, stream, size, into=None):
    """Up to ``size`` bytes, or into the buffer ``into`` (then their count); a damaged gzip is an ``InputError``."""
    try:
        return stream.read(size) if into is None else stream.readinto(into)
    except (OSError, EOFError, zlib.error) as e:
        _fail(path, f"is a damaged gzip file ({e})", "download it again")
