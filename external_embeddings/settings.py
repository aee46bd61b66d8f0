"""Read config.py's constants and apply overrides from the environment and the command line.

Like nanoGPT's configurator, ``--KEY=value`` overrides a constant; unlike it, this does not
``exec`` anything: every override is parsed to the constant's type and checked, and an unknown
key, a wrong type or an impossible value is an error that names the key.
"""

import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

from .errors import InputError

ENV_PREFIX = "KEE_"  # KEE_EPOCHS=2 in the environment; the command line wins over it.
SERVER_PREFIX = "KEE_SERVE_"  # the server's own variables (external_embeddings.serving.app)

FORMATS = ("auto", "text", "word2vec-binary", "gensim")  # VECTORS_FORMAT; convert --format has the same

# Values no experiment can run with; each rule says what it wants.
_RULES = {
    # The CNN's three 5-wide convolutions and two 5-wide poolings need 149 positions.
    "MAX_SEQUENCE_LENGTH": (lambda v: v >= 149, "must be >= 149 (the CNN's convolutions and poolings need it)"),
    "MAX_NUM_WORDS": (lambda v: v >= 2, "must be >= 2 (index 0 is padding)"),
    "VALIDATION_SPLIT": (lambda v: 0 < v < 1, "must be between 0 and 1, exclusive"),
    "BATCH_SIZE": (lambda v: v >= 1, "must be >= 1"),
    "EPOCHS": (lambda v: v >= 1, "must be >= 1"),
    "MAX_MATERIALIZE_BYTES": (lambda v: v > 0, "must be > 0"),
    "SEED": (lambda v: 0 <= v < 2**32, "must be between 0 and 2**32 - 1 (numpy's and Keras's seed range)"),
    "EMBEDDING_DIM": (lambda v: v >= 1, "must be >= 1"),
    # An empty path means "use the default source"; a given one must exist.
    "VECTORS": (lambda v: not v or Path(v).expanduser().exists(), "names a path that does not exist"),
    "VECTORS_FORMAT": (lambda v: v in FORMATS, f"is not one of {', '.join(FORMATS)}"),
    "GLOVE_DIR": (lambda v: not v or Path(v).expanduser().is_dir(),
                  "is not a folder (it names the folder of glove.6B.<dim>d.txt; a file goes in VECTORS)"),
    "TEXT_DATA_DIR": (lambda v: not v or Path(v).expanduser().exists(),
                      "names a path that does not exist (leave it empty for the download or demo corpus)"),
}

# Settings that one of the two scripts does not read (when the test says so): given explicitly to
# that script, each gets one warning line rather than being ignored without a word.
_UNREAD = {
    "pretrained_word_embeddings": [
        ("STORE_VOCABULARY", lambda values: True,
         "only pretrained_external_word_embeddings.py reads it (this script keeps the MAX_NUM_WORDS most "
         "frequent words)"),
    ],
    "pretrained_external_word_embeddings": [
        ("MAX_NUM_WORDS", lambda values: values["STORE_VOCABULARY"],
         "with STORE_VOCABULARY=true this script keeps every corpus word the store holds; add "
         "STORE_VOCABULARY=false to keep only the MAX_NUM_WORDS most frequent, as the baseline does"),
    ],
}


def _parse(key, text, default, origin):
    kind = type(default)
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(text)
            return lowered in ("1", "true", "yes")
        if kind is int:
            return int(text.replace("_", ""))
        if kind is float:
            return float(text)
        return text
    except ValueError:
        raise InputError(origin, f"{key}={text!r} is not a valid {kind.__name__}",
                         f"give {key} {'an' if kind.__name__[0] in 'aeiou' else 'a'} {kind.__name__} such as {default!r}") from None


def _natural(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _glove_file(values, given):
    """Turn GLOVE_DIR and EMBEDDING_DIM into VECTORS, the way the original scripts picked their file."""
    folder, dim = values.get("GLOVE_DIR"), values.get("EMBEDDING_DIM")
    if not folder:
        if "EMBEDDING_DIM" in given:  # it would pick nothing: say so rather than ignore it
            raise InputError("settings", f"EMBEDDING_DIM={dim} only picks a file in GLOVE_DIR, which is empty",
                             "set GLOVE_DIR, or drop EMBEDDING_DIM (the dimension comes from the vectors)")
        return
    if values.get("VECTORS"):
        raise InputError("settings", f"GLOVE_DIR={folder!r} and VECTORS={values['VECTORS']!r} are both set",
                         "set only one of GLOVE_DIR and VECTORS")
    path = Path(folder).expanduser()
    name = f"glove.6B.{dim}d.txt"
    if not (path / name).is_file():
        there = sorted((p.name for p in path.iterdir() if p.name.lower().startswith("glove")), key=_natural)
        dims = [m.group(1) for n in there if (m := re.fullmatch(r"glove\.6B\.(\d+)d\.txt", n))]
        if dims:
            fix = f"set EMBEDDING_DIM to {' or '.join(dims)}"
        elif [n for n in there if n.endswith(".zip")]:
            fix = f"unzip {[n for n in there if n.endswith('.zip')][0]} into {path}"
        else:
            fix = "put GloVe's files there (unzip glove.6B.zip from https://nlp.stanford.edu/projects/glove/)"
        raise InputError("settings", f"GLOVE_DIR={folder!r} holds no {name} (EMBEDDING_DIM={dim}); it holds "
                         f"{', '.join(there) if there else 'no glove files'}", fix)
    values["VECTORS"] = str(path / name)


def unread_warnings(script, values, given):
    """One line for each setting given explicitly (``given``: {key: where}) that ``script`` will not read."""
    return [f"warning: {key}={values[key]!r} ({given[key]}) is ignored: {why}"
            for key, applies, why in _UNREAD.get(script, ()) if key in given and applies(values)]


def load(config_module, argv=None, environ=None, script=None):
    """Return the settings as a namespace: config.py's constants, then env, then ``--KEY=value``.

    With ``script`` (the name of one of the two scripts), a setting that script does not read but
    was given explicitly gets one warning line on stderr.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    environ = os.environ if environ is None else environ
    defaults = {k: v for k, v in vars(config_module).items() if k.isupper()}
    values, given = dict(defaults), {}

    def apply(key, text, origin):
        if key not in defaults:
            raise InputError(origin, f"unknown setting {key}", f"known settings: {', '.join(defaults)}")
        values[key] = _parse(key, text, defaults[key], origin)
        given[key] = origin

    for name, text in environ.items():
        # KEE_SERVE_* belong to the server (KEE_SERVE_TOKEN is how its token is best given), not to the scripts.
        if name.startswith(ENV_PREFIX) and not name.startswith(SERVER_PREFIX):
            apply(name[len(ENV_PREFIX):], text, f"environment {name}")
    for arg in argv:
        if arg in ("-h", "--help"):
            print("Settings (override with --KEY=value or the environment variable KEE_KEY):")
            for key, value in defaults.items():
                print(f"  --{key}={value!r}")
            raise SystemExit(0)
        key, eq, text = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not eq:
            raise InputError("command line", f"cannot read {arg!r}", "write overrides as --KEY=value")
        apply(key, text, "command line")

    for line in unread_warnings(script, values, given):  # before the checks, so they show with an error too
        print(line, file=sys.stderr)
    for key, (ok, wants) in _RULES.items():
        if key in values and not ok(values[key]):
            raise InputError("settings", f"{key}={values[key]!r} {wants}", f"change {key}")
    _glove_file(values, given)
    return SimpleNamespace(**values)
