"""Read a 20 Newsgroups-style corpus: one folder per category, one numeric file per document.

Two layouts are read: the original's (``ROOT/<category>/<number>``) and the "bydate" one
(``ROOT/20news-bydate-train/...`` and optionally ``ROOT/20news-bydate-test/...``), whose test
split gives a test accuracy; either may sit inside one wrapping folder (``ROOT/20_newsgroups/...``). Files are latin-1, so every byte reads without error.

Header policy: the news headers (``From:``, ``Newsgroups:``, ...) are dropped so the
``Newsgroups:`` header cannot leak the label. When the file has a blank line, everything up to
the first blank line is the header block, as in the original. When it has none, the leading
lines that look like ``Key: value`` headers (and their indented continuations) are dropped and
the rest is kept, so such a file is never silently emptied.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

TRAIN, TEST = "20news-bydate-train", "20news-bydate-test"
_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:( |$)")


@dataclass
class Corpus:
    texts: list
    labels: np.ndarray  # int, index into label_names
    label_names: list
    test_texts: list = field(default_factory=list)
    test_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    source: str = ""
    ignored: int = 0  # stray entries: non-numeric names, hidden files, files at the top level
    empty: int = 0  # documents with nothing left after the headers were dropped


def strip_headers(text):
    """Return the body of a news post (see the module docstring for the policy)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    head, blank, body = text.partition("\n\n")
    if blank:
        return body
    lines = text.split("\n")
    i = 0
    while i < len(lines) and (_HEADER_LINE.match(lines[i]) or (i and lines[i][:1] in (" ", "\t"))):
        i += 1
    return "\n".join(lines[i:])


def _keep(entries, wanted, corpus):
    """The folder entries that ``wanted`` accepts; the others are counted as ignored."""
    entries = list(entries)
    kept = [entry for entry in entries if wanted(entry)]
    corpus.ignored += len(entries) - len(kept)
    return kept


def _read_categories(root, corpus, label_names=None):
    """Read ``root/<category>/<number>`` files into (texts, labels); counts what it skips."""
    if not root.is_dir():
        raise InputError(root, "is not a folder", "point TEXT_DATA_DIR at the corpus folder")
    categories = _keep(sorted(root.iterdir()), lambda e: e.is_dir() and not e.name.startswith("."), corpus)
    if not categories:
        raise InputError(root, "holds no category folders",
                         "give a folder with one sub-folder of numbered documents per category")
    names = label_names if label_names is not None else [c.name for c in categories]
    if label_names is None and len(names) < 2:
        raise InputError(root, f"holds only the category {names[0]!r}", "a classifier needs at least two categories")
    texts, labels = [], []
    for category in categories:
        if category.name not in names:
            raise InputError(category, "is a category that the training split does not have",
                             "make the test split's folders match the training split's")
        # isascii: "²" is a digit to Python but not a number int() reads.
        documents = _keep(category.iterdir(), lambda e: e.is_file() and e.name.isascii() and e.name.isdigit(), corpus)
        if not documents:
            raise InputError(category, "holds no documents (files with numeric names)",
                             "remove the folder or add its documents")
        kept = len(texts)
        for document in sorted(documents, key=lambda p: int(p.name)):
            body = strip_headers(document.read_bytes().decode("latin-1"))
            if not body.strip():
                corpus.empty += 1
                continue
            texts.append(body)
            labels.append(names.index(category.name))
        if len(texts) == kept:  # a label with no text to learn it from
            raise InputError(category, f"holds {len(documents)} documents, all empty once their headers are dropped",
                             "remove the folder or add documents with text")
    return texts, np.array(labels, dtype=np.int64), names


def _unwrapped(root):
    """The folder below ``root``'s single wrapping folders, as ``tar czf x.tar.gz folder/`` makes them.

    A folder whose one visible entry is a folder that itself holds folders cannot be a corpus (a
    classifier needs two categories, and a category holds documents), so it is looked through:
    ``20_newsgroups/alt.atheism/...`` (the original example's archive) reads as its categories.
    """
    for _ in range(4):
        if (root / TRAIN).is_dir():
            return root
        entries = [e for e in root.iterdir() if not e.name.startswith(".")] if root.is_dir() else []
        if len(entries) != 1 or not entries[0].is_dir() or not any(e.is_dir() for e in entries[0].iterdir()):
            return root
        root = entries[0]
    return root


def load_corpus(root):
    """Read a corpus folder in either layout; see the module docstring."""
    root = Path(root).expanduser()
    if not root.exists():
        raise InputError(root, "does not exist", "point TEXT_DATA_DIR at the 20 Newsgroups folder")
    corpus = Corpus([], np.zeros(0), [], source=str(root))
    root = _unwrapped(root)
    if (root / TRAIN).is_dir():
        corpus.ignored += sum(entry.name not in (TRAIN, TEST) for entry in root.iterdir())
        corpus.texts, corpus.labels, corpus.label_names = _read_categories(root / TRAIN, corpus)
        if (root / TEST).is_dir():
            corpus.test_texts, corpus.test_labels, _ = _read_categories(root / TEST, corpus, corpus.label_names)
    else:
        corpus.texts, corpus.labels, corpus.label_names = _read_categories(root, corpus)
    if not corpus.texts:
        raise InputError(root, "holds no documents with text", "check the corpus files")
    return corpus


def split(count, validation_split, seed):
    """Shuffled (train, validation) index arrays, the same for both scripts."""
    from sklearn.model_selection import train_test_split

    try:
        train, validation = train_test_split(np.arange(count), test_size=validation_split, random_state=seed)
    except ValueError as e:
        raise InputError("settings", f"cannot split {count} documents with VALIDATION_SPLIT={validation_split} ({e})",
                         "change VALIDATION_SPLIT or add documents") from None
    return np.sort(train), np.sort(validation)
