"""Settings precedence as config.py states it: keyword arguments > RAGWORKS_* environment > TOML file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ragworks.config import Settings

TOML = """
collection = "from-toml"
chunk_tokens = 128
search_mode = "bm25"
llm = "extractive"
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    import os

    for key in list(os.environ):
        if key.startswith("RAGWORKS_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no ./ragworks.toml unless a test writes one
    return monkeypatch


def test_defaults_without_file_or_environment(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert (s.collection, s.chunk_tokens, s.search_mode) == ("default", 256, "hybrid")


def test_toml_named_by_ragworks_config_is_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "my.toml"
    path.parent.mkdir()
    path.write_text(TOML)
    clean_env.setenv("RAGWORKS_CONFIG", str(path))
    s = Settings()
    assert (s.collection, s.chunk_tokens, s.search_mode, s.llm) == ("from-toml", 128, "bm25", "extractive")


def test_ragworks_toml_in_the_working_directory_is_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "ragworks.toml").write_text(TOML)
    assert Settings().collection == "from-toml"


def test_environment_beats_toml_and_arguments_beat_both(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "ragworks.toml").write_text(TOML)
    clean_env.setenv("RAGWORKS_COLLECTION", "from-env")
    clean_env.setenv("RAGWORKS_CHUNK_TOKENS", "64")
    s = Settings()
    assert (s.collection, s.chunk_tokens, s.search_mode) == ("from-env", 64, "bm25")  # bm25: TOML still fills in
    s = Settings(collection="from-args")
    assert (s.collection, s.chunk_tokens) == ("from-args", 64)


def test_a_bad_value_in_the_toml_file_is_an_error_naming_the_field(clean_env: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "ragworks.toml").write_text('search_mode = "fuzzy"\n')
    with pytest.raises(ValidationError, match="search_mode"):
        Settings()
