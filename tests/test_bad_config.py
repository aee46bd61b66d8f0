"""Bad settings, from the command line or the environment: one InputError naming the key.

Unknown keys and wrong types also name where they came from (``command line`` or the variable);
an impossible value is checked after all overrides, as ``settings``.
"""

import pytest

import config
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
    assert message.startswith(f"{place}: {key}={value!r} is not a valid {kind}; give {key} a {kind} such as ")


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
