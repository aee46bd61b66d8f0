"""Token ids exactly as a Keras 3 ``TextVectorization`` layer (output_mode "int") gives them, without TensorFlow.

The layer runs TensorFlow string ops on each text's UTF-8 bytes, and they are ASCII-only and
byte-wise; this was checked on every code point (tests/test_specs.py keeps checking it):

- ``tf.strings.lower`` (called with no encoding, as the layer does) lower-cases A-Z only: "İ",
  "Σ" or "Ä" stay as they are, unlike Python's ``str.lower``;
- the strip pattern ``[!"#$%&()\\*\\+,-\\./:;<=>?@\\[\\\\\\]^_`{|}~\\']`` (RE2) removes exactly the
  32 ASCII punctuation characters of ``string.punctuation`` (``,-\\.`` is a range holding "-");
- ``tf.strings.split`` with no separator splits on runs of the six ASCII spaces " \\t\\n\\v\\f\\r"
  only: U+00A0, U+2028, U+3000 and \\x1c-\\x1f are parts of words.

Python's bytes methods do exactly this: ``bytes.translate`` for both steps and ``bytes.split()``,
which splits on the same six bytes. Each token then maps to its index in the vocabulary ("" is
0, padding; "[UNK]" is 1, every unknown token); the first ``output_sequence_length`` ids are
kept and zeros follow ("post" truncation and padding).
"""

import string


from ..errors import InputError
from . import shared_tokens, spec_files
from .tokenizer import pad

KIND = "text_vectorization"
STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation", None)
OOV_ID = 1
_LOWER = bytes.maketrans(string.ascii_uppercase.encode(), string.ascii_lowercase.encode())
_PUNCTUATION = string.punctuation.encode()


def spec_from_layer(layer):
    """(spec, vocabulary) of a ``TextVectorization`` layer; a setting this module cannot reproduce
    exactly is refused with one InputError naming it."""
    config = layer.get_config()
    where = f"TextVectorization layer {layer.name!r}"
    fix = "only the layer's built-in settings with output_mode='int' and a fixed length can be reproduced"
    standardize = config.get("standardize")
    if not (standardize is None or isinstance(standardize, str) and standardize in STANDARDIZE):
        raise InputError(where, f"has standardize={_shown(standardize)}, a custom function", fix)
    refused = [("split", config.get("split"), "whitespace"), ("ngrams", config.get("ngrams"), None),
               ("output_mode", config.get("output_mode"), "int"), ("ragged", config.get("ragged"), False),
               ("encoding", str(config.get("encoding", "utf-8")).lower().replace("_", "-"), "utf-8")]
    for setting, value, wanted in refused:
        if value != wanted:
            raise InputError(where, f"has {setting}={_shown(value)} (only {wanted!r} is supported)", fix)
    length = config.get("output_sequence_length")
    if type(length) is not int or length < 1:
        raise InputError(where, f"has output_sequence_length={length!r}: its ids' length would depend on the batch",
                         "set output_sequence_length on the layer (keras-io's example uses 200)")
    vocabulary = layer_vocabulary(layer)
    spec = {"kind": KIND, "standardize": standardize, "split": "whitespace", "output_sequence_length": length,
            "vocabulary": "vocabulary.json"}
    check_vocabulary(vocabulary, where)
    return spec, vocabulary


def layer_vocabulary(layer):
    """The layer's vocabulary by id, read from its lookup table where it can be.

    ``get_vocabulary()`` passes the words through a numpy string array, which drops trailing NUL
    characters: a token "a\\x00" would read as "a" (and "\\x00" as "", a second padding token),
    while the layer still looks the real token up.
    """
    lookup = getattr(layer, "_lookup_layer", None)
    table = getattr(lookup, "lookup_table", None)
    if table is None or getattr(lookup, "invert", False) or int(table.size()) == 0:
        return [str(word) for word in layer.get_vocabulary()]
    keys, values = table.export()
    words = {int(i): key.decode("utf-8") for key, i in zip(keys.numpy().tolist(), values.numpy().tolist())}
    vocabulary = ["", "[UNK]"] + [words.get(i) for i in range(2, max(words) + 1)]
    if None in vocabulary or len(vocabulary) != layer.vocabulary_size():
        raise InputError(f"TextVectorization layer {layer.name!r}", "has a lookup table with gaps in its ids",
                         "re-adapt the layer")
    return vocabulary


def _shown(value):
    """A setting as the error shows it: a function by its name, not its whole serialized config."""
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    if isinstance(value, dict):
        return repr(value.get("config", value.get("class_name", value)))[:80]
    return repr(value)


def check_vocabulary(vocabulary, where):
    """Refuse a vocabulary the layer could not have had: not "", "[UNK]" first, not strings, or a word twice."""
    if not isinstance(vocabulary, list) or not all(isinstance(word, str) for word in vocabulary):
        raise InputError(where, "has a vocabulary that is not a list of words", "re-export the model")
    if vocabulary[:2] != ["", "[UNK]"] or len(vocabulary) < 3:
        raise InputError(where, "has a vocabulary that does not start with '' (padding) and '[UNK]' and a word "
                         "(an unadapted layer?)", "give the layer's get_vocabulary() of an adapted layer")
    if len(set(vocabulary)) != len(vocabulary):
        raise InputError(where, "has a vocabulary that holds a word twice", "re-export the model")


class TextVectorizationTokenizer:
    """Texts to the ids a ``TextVectorization`` layer gives (see the module docstring)."""

    kind, padding, truncating, oov_id = KIND, "post", "post", OOV_ID

    def __init__(self, spec, vocabulary, where="tokenizer", source=None):
        """``where`` names the spec's place (a manifest) in errors, ``source`` the vocabulary's file."""
        if spec.get("split") != "whitespace":
            raise InputError(where, f"has a tokenizer split of {spec.get('split')!r}", "only 'whitespace' is supported")
        if spec.get("standardize") not in STANDARDIZE:
            raise InputError(where, f"has a tokenizer standardize of {spec.get('standardize')!r}",
                             "use one of " + ", ".join(map(repr, STANDARDIZE)))
        self.length = spec_files.whole_number(spec.get("output_sequence_length"), where, "output_sequence_length")
        check_vocabulary(vocabulary, source or where)
        self.standardize = spec["standardize"]
        self._lower = self.standardize in ("lower", "lower_and_strip_punctuation")
        self._strip = self.standardize in ("strip_punctuation", "lower_and_strip_punctuation")
        index = {word.encode("utf-8", "surrogatepass"): i for i, word in enumerate(vocabulary)}
        del index[b""]  # the mask token: no token is ever empty after splitting
        self._table = shared_tokens.VocabularyTable(index, OOV_ID)
        self.vocabulary_size = len(vocabulary)
        self.token_key = (KIND, self.standardize)  # tokenizers with equal token_key split texts alike
        self.sequence_key = self.token_key + (spec_files.digest(vocabulary),)
        self.key = self.sequence_key + (self.length, self.padding, self.truncating)

    def tokens(self, text):
        """The layer's tokens of one text, as UTF-8 bytes."""
        data = text.encode("utf-8")
        if self._lower or self._strip:
            data = data.translate(_LOWER if self._lower else None, _PUNCTUATION if self._strip else b"")
        return data.split()

    def numbered(self, texts):
        """Each text's tokens as shared numbers (see shared_tokens), the same for every vocabulary."""
        return shared_tokens.number(self.tokens(text) for text in texts)

    def sequences(self, texts, numbered=None):
        """Each text's ids before padding and truncation (from ``numbered(texts)`` when given)."""
        return self._table.ids(self.numbered(texts) if numbered is None else numbered)

    def ids(self, texts):
        """``(N, output_sequence_length)`` int32: exactly the layer's output."""
        return pad(self.sequences(texts), self.length, self.padding, self.truncating)
