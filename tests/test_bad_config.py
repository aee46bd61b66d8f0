"""Bad settings, from the command line or the environment: one InputError naming the key.

Unknown keys and wrong types also name where they came from (``command line`` or the variable);
an impossible value is checked after all overrides, as ``settings``.
"""

import os
import subprocess
import sys

import pytest

import config
from conftest import ROOT
from external_embeddings import settings
from external_embeddings.errors import InputError


def refusal(argv=(), environ=None):
    with pytest.raises(InputError) as raised:
        settings.load(config, list(argv), environ={} if environ is None else environ)
    return str(raised.value)


def from_argv(key, value):
    return refusal([f"--{key}={value}"])


def from_environ(key, value):
    return refusal(environ={f"KEE_{key}": value})


# ## Unknown keys


def test_an_unknown_key_on_the_command_line_is_named_with_the_known_ones():
    message = from_argv("EPOCS", "3")
    assert message.startswith("command line: unknown setting EPOCS; known settings: ")
    assert "EPOCHS" in message and "MAX_SEQUENCE_LENGTH" in message


def test_an_unknown_key_in_the_environment_is_named_with_its_variable():
    message = from_environ("EPOCS", "3")
    assert message.startswith("environment KEE_EPOCS: unknown setting EPOCS; known settings: ")


def test_the_servers_own_variables_are_left_to_the_server():
    """KEE_SERVE_TOKEN (the README's way to give the token) must not stop a training script."""
    cfg = settings.load(config, [], environ={"KEE_SERVE_TOKEN": "s3cret", "KEE_SERVE_MAX_TEXTS": "8", "KEE_EPOCHS": "2"})
    assert cfg.EPOCHS == 2


def test_lower_case_keys_are_unknown_not_silently_ignored():
    assert "unknown setting epochs" in from_argv("epochs", "3")


def test_an_argument_that_is_not_key_equals_value_is_an_error():
    assert refusal(["--EPOCHS"]) == "command line: cannot read '--EPOCHS'; write overrides as --KEY=value"
    assert refusal(["EPOCHS=3"]) == "command line: cannot read 'EPOCHS=3'; write overrides as --KEY=value"


def test_variables_without_the_prefix_are_not_settings():
    cfg = settings.load(config, [], environ={"EPOCHS": "banana", "KEE": "x", "HOME": "/root"})
    assert cfg.EPOCHS == config.EPOCHS


# ## Wrong types


@pytest.mark.parametrize("key, value, kind", [
    ("EPOCHS", "ten", "int"), ("EPOCHS", "2.5", "int"), ("EPOCHS", "", "int"), ("BATCH_SIZE", "0x10", "int"),
    ("VALIDATION_SPLIT", "a fifth", "float"), ("VALIDATION_SPLIT", "20%", "float"),
    ("STORE_VOCABULARY", "maybe", "bool"), ("MAX_MATERIALIZE_BYTES", "2GB", "int"),
])
@pytest.mark.parametrize("origin", ["argv", "environ"])
def test_a_value_of_the_wrong_type_is_an_error_naming_key_and_origin(key, value, kind, origin):
    if origin == "argv":
        message, place = from_argv(key, value), "command line"
    else:
        message, place = from_environ(key, value), f"environment KEE_{key}"
    assert message.startswith(f"{place}: {key}={value!r} is not a valid {kind}; give {key} {'an' if kind[0] in 'aeiou' else 'a'} {kind} such as ")


# ## Impossible values


@pytest.mark.parametrize("key, value, wants", [
    ("MAX_SEQUENCE_LENGTH", "0", "must be"), ("MAX_SEQUENCE_LENGTH", "-5", "must be"),
    ("VALIDATION_SPLIT", "0", "between 0 and 1"), ("VALIDATION_SPLIT", "1", "between 0 and 1"),
    ("VALIDATION_SPLIT", "1.5", "between 0 and 1"), ("VALIDATION_SPLIT", "-0.1", "between 0 and 1"),
    ("VALIDATION_SPLIT", "nan", "between 0 and 1"), ("EPOCHS", "0", "must be >= 1"), ("EPOCHS", "-1", "must be >= 1"),
    ("BATCH_SIZE", "0", "must be >= 1"), ("MAX_NUM_WORDS", "1", "must be >= 2"),
    ("MAX_MATERIALIZE_BYTES", "0", "must be > 0"), ("SEED", "-1", "must be between 0 and 2**32 - 1"),
    ("SEED", str(2**32), "must be between 0 and 2**32 - 1"),
])
@pytest.mark.parametrize("origin", ["argv", "environ"])
def test_an_impossible_value_is_an_error_naming_the_key(key, value, wants, origin):
    message = from_argv(key, value) if origin == "argv" else from_environ(key, value)
    assert message.startswith(f"settings: {key}={type(getattr(config, key))(value)!r} ")
    assert wants in message and message.endswith(f"; change {key}")


@pytest.mark.parametrize("key", ["VECTORS", "TEXT_DATA_DIR"])
@pytest.mark.parametrize("origin", ["argv", "environ"])
def test_a_path_that_does_not_exist_is_an_error_naming_key_and_path(tmp_path, key, origin):
    missing = tmp_path / "no" / "such.txt"
    message = from_argv(key, missing) if origin == "argv" else from_environ(key, str(missing))
    assert message.startswith(f"settings: {key}={str(missing)!r} names a path that does not exist")
    assert message.endswith(f"; change {key}")


def test_existing_paths_and_empty_paths_are_accepted(tmp_path):
    (tmp_path / "v.txt").write_text("the 0.1\n")
    cfg = settings.load(config, [f"--VECTORS={tmp_path / 'v.txt'}", "--TEXT_DATA_DIR="],
                        environ={"KEE_TEXT_DATA_DIR": str(tmp_path)})
    assert cfg.VECTORS == str(tmp_path / "v.txt") and cfg.TEXT_DATA_DIR == ""  # the command line wins


def test_the_command_line_can_repair_a_bad_environment_value_but_not_break_a_good_one():
    assert settings.load(config, ["--EPOCHS=2"], environ={"KEE_EPOCHS": "0"}).EPOCHS == 2
    assert refusal(["--EPOCHS=0"], environ={"KEE_EPOCHS": "2"}).startswith("settings: EPOCHS=0 must be >= 1")


# ## Checked before TensorFlow loads; settings a script does not read


@pytest.mark.parametrize("script, argv, environ, lines", [
    ("pretrained_word_embeddings", ["--EPOCS=3"], {}, ["error: command line: unknown setting EPOCS; "]),
    ("pretrained_word_embeddings", ["--STORE_VOCABULARY=false", "--TEXT_DATA_DIR=/no/such/corpus"], {},
     ["warning: STORE_VOCABULARY=False (command line) is ignored: only pretrained_external_word_embeddings.py",
      "error: settings: TEXT_DATA_DIR='/no/such/corpus' names a path that does not exist"]),
    ("pretrained_external_word_embeddings", ["--BATCH_SIZE=lots"], {},
     ["error: command line: BATCH_SIZE='lots' is not a valid int"]),
    ("pretrained_external_word_embeddings", ["--VECTORS=/no/such.txt"], {"KEE_MAX_NUM_WORDS": "50"},
     ["warning: MAX_NUM_WORDS=50 (environment KEE_MAX_NUM_WORDS) is ignored: with STORE_VOCABULARY=true",
      "error: settings: VECTORS='/no/such.txt' names a path that does not exist"]),
])
def test_a_script_checks_its_settings_before_importing_tensorflow(tmp_path, script, argv, environ, lines):
    """A bad setting was reported only after TensorFlow had loaded (~8 s); -X importtime lists every import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEE_")} | environ
    done = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / f"{script}.py"), *argv],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    printed = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "external_embeddings.settings" in imported  # the listing works
    assert not [name for name in imported if name.split(".")[0] in ("tensorflow", "keras", "jax", "torch")]
    assert len(printed) == len(lines) and all(line.startswith(start) for line, start in zip(printed, lines)), printed


def warnings_of(script, argv=(), environ=None, capsys=None):
    settings.load(config, list(argv), environ=environ or {}, script=script)
    return capsys.readouterr().err.splitlines()


def test_max_num_words_given_to_the_external_script_that_keeps_every_store_word_is_one_warning(capsys):
    external = "pretrained_external_word_embeddings"
    assert warnings_of(external, ["--MAX_NUM_WORDS=500"], capsys=capsys) == [
        "warning: MAX_NUM_WORDS=500 (command line) is ignored: with STORE_VOCABULARY=true this script keeps every "
        "corpus word the store holds; add STORE_VOCABULARY=false to keep only the MAX_NUM_WORDS most frequent, as "
        "the baseline does"]
    assert warnings_of(external, ["--MAX_NUM_WORDS=500", "--STORE_VOCABULARY=true"], capsys=capsys)[0].startswith(
        "warning: MAX_NUM_WORDS=500 (command line) is ignored")
    # Read, so no warning: with STORE_VOCABULARY=false (however given), or left at its default.
    assert warnings_of(external, ["--MAX_NUM_WORDS=500"], {"KEE_STORE_VOCABULARY": "false"}, capsys) == []
    assert warnings_of(external, ["--EPOCHS=2", "--STORE_VOCABULARY=true"], capsys=capsys) == []
    assert warnings_of(None, ["--MAX_NUM_WORDS=500"], capsys=capsys) == []  # no script named: no rule


def test_store_vocabulary_given_to_the_baseline_is_one_warning(capsys):
    baseline = "pretrained_word_embeddings"
    assert warnings_of(baseline, [], {"KEE_STORE_VOCABULARY": "true"}, capsys) == [
        "warning: STORE_VOCABULARY=True (environment KEE_STORE_VOCABULARY) is ignored: only "
        "pretrained_external_word_embeddings.py reads it (this script keeps the MAX_NUM_WORDS most frequent words)"]
    assert warnings_of(baseline, ["--MAX_NUM_WORDS=500"], capsys=capsys) == []
