"""One token -> number index for every tokenizer of a process, and each vocabulary as an array over it.

A server holds K models, often each with its own vocabulary of the same kind of words. Giving
every model its own ``{token: id}`` dict costs ~2 MB per 20,000-word vocabulary per worker, and
maps each token once per model, in Python. Here every distinct token of every vocabulary gets one
number in one dict for the whole process, a vocabulary becomes an int32 array over those numbers,
and a text's tokens are numbered once for all models that split texts alike; each model's ids
are then one numpy ``take``.

Number 0 stands for a token that no vocabulary holds, so texts are numbered after every vocabulary
that will read the numbers is loaded (the Predictor loads its models first). The index only grows
(a reload adds the new vocabularies' tokens); CPython's dict is safe to read while a loading
thread adds to it.
"""

import itertools

import numpy as np

_NUMBERS = {}  # token (str or UTF-8 bytes) -> its number, 1, 2, ...


def number(token_lists):
    """The token lists' numbers (0: in no vocabulary), as ``(flat int64 array, each list's length)``.

    All tokens are numbered in one ``map`` of the dict's own ``get``, which runs in C: a generator
    per token list took 3 times as long, a tenth of a batch's time with 8 models. They stay one
    flat array, which each vocabulary maps with one ``take`` and splits once.
    """
    token_lists = [list(tokens) for tokens in token_lists]
    lengths = [len(tokens) for tokens in token_lists]
    total = sum(lengths)
    flat = itertools.chain.from_iterable(token_lists)
    return np.fromiter(map(_NUMBERS.get, flat, itertools.repeat(0, total)), dtype=np.int64, count=total), lengths


class VocabularyTable:
    """A vocabulary ``{token: id}`` as an array over the shared numbers; ``missing`` is the id of a
    token outside it, or -1 to drop such tokens (Keras 2's Tokenizer without an oov_token)."""

    def __init__(self, index, missing):
        for token in index:
            _NUMBERS.setdefault(token, len(_NUMBERS) + 1)
        self.missing = missing
        self._table = np.full(len(_NUMBERS) + 1, missing, dtype=np.int32)
        self._table[np.fromiter((_NUMBERS[t] for t in index), dtype=np.int64, count=len(index))] = \
            np.fromiter(index.values(), dtype=np.int32, count=len(index))

    def ids(self, numbered):
        """The ids of numbered token lists (``number``'s result), as a list of int32 arrays."""
        flat, lengths = numbered
        if flat.size and flat.max() >= len(self._table):  # numbers added by vocabularies loaded later
            grown = np.full(len(_NUMBERS) + 1, self.missing, dtype=np.int32)
            grown[:len(self._table)] = self._table
            self._table = grown
        out = np.split(np.take(self._table, flat), np.cumsum(lengths[:-1])) if lengths else []
        return [row[row >= 0] for row in out] if self.missing < 0 else out
