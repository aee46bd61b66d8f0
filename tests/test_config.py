"""config.py overrides: the command line wins over the environment, which wins over the file."""

import config
from external_embeddings import settings


def test_defaults_come_from_config_py():
    cfg = settings.load(config, [], environ={})
    assert cfg.MAX_SEQUENCE_LENGTH == 1000 and cfg.MAX_NUM_WORDS == 20000 and cfg.VALIDATION_SPLIT == 0.2
    assert cfg.BATCH_SIZE == 128 and cfg.EPOCHS == 10 and cfg.VECTORS == ""


def test_overrides_are_parsed_to_the_constant_type_and_argv_wins():
    environ = {"KEE_EPOCHS": "3", "KEE_VALIDATION_SPLIT": "0.3", "KEE_STORE_VOCABULARY": "false", "HOME": "/x"}
    cfg = settings.load(config, ["--EPOCHS=2", "--MAX_NUM_WORDS=5_000", "--OUTPUT_DIR=runs/a"], environ=environ)
    assert cfg.EPOCHS == 2 and cfg.VALIDATION_SPLIT == 0.3 and cfg.MAX_NUM_WORDS == 5000
    assert cfg.OUTPUT_DIR == "runs/a" and cfg.STORE_VOCABULARY is False
