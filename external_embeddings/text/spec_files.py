"""The files a tokenizer spec names beside a model (vocabulary.json, word_index.json): read, write, checked.

Kept apart from the kinds' modules so that each kind and ``specs`` share them without importing
one another.
"""

import hashlib
import json
from pathlib import Path

from ..errors import InputError

PADDING_SIDES = ("pre", "post")


def digest(value):
    """A short, stable hash of a JSON value: two vocabularies are the same when their digests are."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def file_name(spec, field, where):
    """The plain ``.json`` file name a spec gives in ``field``; never a path out of the model's folder."""
    name = spec.get(field)
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".json") or name.startswith("."):
        raise InputError(where, f"names no {field} file in its tokenizer (got {name!r})",
                         "give a .json file name in the model's folder")
    return name


def read(model_dir, name):
    """The JSON value of ``model_dir/name``; an InputError when it is missing or damaged."""
    path = Path(model_dir) / name
    try:
        return json.loads(path.read_text(encoding="utf-8")), path
    except FileNotFoundError:
        raise InputError(path, "is missing", "copy the whole model folder") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(path, f"is not valid JSON ({e})", "re-export the model") from None


def write(model_dir, name, value):
    """Write ``value`` as UTF-8 JSON to ``model_dir/name`` (inside a folder being written atomically)."""
    Path(model_dir, name).write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


def whole_number(value, where, setting, low=1, none=False):
    """``value`` when it is an int >= ``low`` (or None when allowed); else one InputError naming the setting."""
    if (value is None and none) or (type(value) is int and value >= low):
        return value
    raise InputError(where, f"has {setting}={value!r}, not a whole number >= {low}", "re-export the model")


def side(value, where, setting):
    """"pre" or "post"; else one InputError naming the setting."""
    if value not in PADDING_SIDES:
        raise InputError(where, f"has {setting}={value!r}, not 'pre' or 'post'", "give pre or post")
    return value
