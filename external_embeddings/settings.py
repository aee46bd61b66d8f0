"""Read config.py's constants and apply overrides from the environment and the command line.

Like nanoGPT's configurator, ``--KEY=value`` overrides a constant; unlike it, this does not
``exec`` anything: every override is parsed to the constant's type and checked, and an unknown
key, a wrong type or an impossible value is an error that names the key.
"""

import os
import sys
from pathlib import Path
from types import SimpleNamespace

from .errors import InputError

ENV_PREFIX = "KEE_"  # KEE_EPOCHS=2 in the environment; the command line wins over it.

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
    # An empty path means "use the default source"; a given one must exist.
    "VECTORS": (lambda v: not v or Path(v).expanduser().exists(), "names a path that does not exist"),
    "TEXT_DATA_DIR": (lambda v: not v or Path(v).expanduser().exists(),
                      "names a path that does not exist (leave it empty for the download or demo corpus)"),
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
                         f"give {key} a {kind.__name__} such as {default!r}") from None


def load(config_module, argv=None, environ=None):
    """Return the settings as a namespace: config.py's constants, then env, then ``--KEY=value``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    environ = os.environ if environ is None else environ
    defaults = {k: v for k, v in vars(config_module).items() if k.isupper()}
    values = dict(defaults)

    def apply(key, text, origin):
        if key not in defaults:
            raise InputError(origin, f"unknown setting {key}", f"known settings: {', '.join(defaults)}")
        values[key] = _parse(key, text, defaults[key], origin)

    for name, text in environ.items():
        if name.startswith(ENV_PREFIX):
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

    for key, (ok, wants) in _RULES.items():
        if key in values and not ok(values[key]):
            raise InputError("settings", f"{key}={values[key]!r} {wants}", f"change {key}")
    return SimpleNamespace(**values)
