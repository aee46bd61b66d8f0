"""Token ids exactly as a Keras 2 ``Tokenizer`` (from its ``to_json()``) and ``pad_sequences`` give them.

The rules are Keras 2's ``text_to_word_sequence`` (``tokenizer.words``, pure Python as it was)
and ``texts_to_sequences``: a word outside ``word_index`` is dropped, and so is a word whose id
is ``num_words`` or more, unless the Tokenizer has an ``oov_token``: then both become its id.
``pad_sequences(maxlen, padding, truncating)`` is ``tokenizer.pad``.

A Tokenizer's ``analyzer`` function is not in its JSON, so a Tokenizer that used one cannot be
told apart here; ``char_level=True`` is refused.
"""

import json


from ..errors import InputError
from . import shared_tokens, spec_files
from .tokenizer import pad, words

KIND = "keras2"


def spec_from_json(json_text, where, maxlen, padding="pre", truncating="pre"):
    """(spec, word_index) of a ``Tokenizer.to_json()`` text and the ``pad_sequences`` settings it was used with."""
    try:
        document = json.loads(json_text)
        config = document["config"]
        word_index = config["word_index"]
        word_index = json.loads(word_index) if isinstance(word_index, str) else word_index
    except (ValueError, TypeError, KeyError) as e:
        raise InputError(where, f"is not a Keras 2 Tokenizer's to_json() ({type(e).__name__}: {str(e)[:100]})",
                         "save it with tokenizer.to_json()") from None
    if not isinstance(document, dict) or document.get("class_name", "Tokenizer") != "Tokenizer":
        raise InputError(where, f"is a {document.get('class_name')!r}, not a Keras 2 Tokenizer",
                         "save it with tokenizer.to_json()")
    spec = {"kind": KIND, "filters": config.get("filters"), "lower": config.get("lower"),
            "split": config.get("split"), "char_level": config.get("char_level"),
            "num_words": config.get("num_words"), "oov_token": config.get("oov_token"), "maxlen": maxlen,
            "padding": padding, "truncating": truncating, "word_index": "word_index.json"}
    Keras2Tokenizer(spec, word_index, where)  # every setting checked the one way
    return spec, word_index


class Keras2Tokenizer:
    """Texts to the ids ``pad_sequences(tokenizer.texts_to_sequences(texts), ...)`` gives."""

    kind = KIND

    def __init__(self, spec, word_index, where="tokenizer", source=None):
        """``where`` names the spec's place (a manifest) in errors, ``source`` the word index's file."""
        fix = "re-export the tokenizer with tokenizer.to_json()"
        if spec.get("char_level") is not False:
            raise InputError(where, f"has char_level={spec.get('char_level')!r} (only False, words, is supported)", fix)
        for setting, kind in (("filters", str), ("lower", bool), ("split", str)):
            if type(spec.get(setting)) is not kind:
                raise InputError(where, f"has {setting}={spec.get(setting)!r}, not a {kind.__name__}", fix)
        if not spec["split"]:
            raise InputError(where, "has split='' (Keras 2 cannot split on an empty separator)", fix)
        self.filters, self.lower, self.split = spec["filters"], spec["lower"], spec["split"]
        self.num_words = spec_files.whole_number(spec.get("num_words"), where, "num_words", low=0, none=True)
        self.oov_token = spec.get("oov_token")
        if self.oov_token is not None and not isinstance(self.oov_token, str):
            raise InputError(where, f"has oov_token={self.oov_token!r}, not a string", fix)
        self.length = spec_files.whole_number(spec.get("maxlen"), where, "maxlen")
        self.padding = spec_files.side(spec.get("padding"), where, "padding")
        self.truncating = spec_files.side(spec.get("truncating"), where, "truncating")
        if not isinstance(word_index, dict) or not all(type(i) is int and i >= 1 for i in word_index.values()):
            raise InputError(source or where, "has a word_index that is not a {word: id >= 1} dict", fix)
        self.oov_id = word_index.get(self.oov_token) if self.oov_token is not None else None
        if self.oov_token is not None and self.oov_id is None:
            # Keras 2 would put None among the ids of every text with an unknown word.
            raise InputError(where, f"has oov_token={self.oov_token!r}, which its word_index lacks", fix)
        # Each word's id as texts_to_sequences gives it; a word it drops is left out.
        capped = {word: i if not self.num_words or i < self.num_words else self.oov_id
                  for word, i in word_index.items()}
        index = {word: i for word, i in capped.items() if i is not None}
        # A word outside the index gets the oov id, or -1: dropped, as texts_to_sequences drops it.
        self._table = shared_tokens.VocabularyTable(index, -1 if self.oov_id is None else self.oov_id)
        self.vocabulary_size = max(index.values(), default=0) + 1
        self.token_key = (KIND, self.filters, self.lower, self.split)  # equal: texts split alike
        self.sequence_key = self.token_key + (self.oov_id, spec_files.digest(sorted(index.items())))
        self.key = self.sequence_key + (self.length, self.padding, self.truncating)

    def tokens(self, text):
        """Keras 2's ``text_to_word_sequence`` with this Tokenizer's settings."""
        return words(text, self.filters, self.lower, self.split)

    def numbered(self, texts):
        """Each text's words as shared numbers (see shared_tokens), the same for every word index."""
        return shared_tokens.number(self.tokens(text) for text in texts)

    def sequences(self, texts, numbered=None):
        """``texts_to_sequences``: each text's ids before padding and truncation (from
        ``numbered(texts)`` when given)."""
        return self._table.ids(self.numbered(texts) if numbered is None else numbered)

    def ids(self, texts):
        """``(N, maxlen)`` int32: exactly ``pad_sequences(texts_to_sequences(texts), maxlen, ...)``."""
        return pad(self.sequences(texts), self.length, self.padding, self.truncating)
