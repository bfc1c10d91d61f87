"""Settings are read once from the environment; bad values name the key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorafaas.settings import SettingsError, load_settings, settings_markdown_table


def test_defaults_follow_the_home_folder(tmp_path: Path) -> None:
    settings = load_settings({"LORAFAAS_HOME": str(tmp_path)})
    assert settings.port == 3233
    assert settings.database_url == f"sqlite:///{tmp_path}/lorafaas.db"
    assert settings.props_file == tmp_path / "props"
    assert settings.backbone_dir == tmp_path / "models" / "demo-backbone"


def test_backbone_sharing_is_on_unless_turned_off() -> None:
    assert load_settings({}).backbone_sharing is True
    assert load_settings({"LORAFAAS_BACKBONE_SHARING": "off"}).backbone_sharing is False


def test_port_override() -> None:
    assert load_settings({"LORAFAAS_PORT": "4000"}).port == 4000


@pytest.mark.parametrize("key,value", [("LORAFAAS_PORT", "http"), ("LORAFAAS_PORT", "70000"),
                                       ("LORAFAAS_MAX_ADAPTER_BYTES", "-1"),
                                       ("LORAFAAS_BATCHING", "greedy"),
                                       ("LORAFAAS_SLO_TTFT_MS", "0"),
                                       ("LORAFAAS_PREFILL_ALPHA_MS", "nan"),
                                       ("LORAFAAS_BACKBONE_SHARING", "maybe"),
                                       ("LORAFAAS_PREFILL_PROFILING", "on"),
                                       ("LORAFAAS_PREFILL_PROMPT_LENGTHS", "32,0"),
                                       ("LORAFAAS_PREFILL_PROMPT_LENGTHS", " , ")])
def test_bad_value_names_key_and_value(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{key}='{value}'"):
        load_settings({key: value})


def test_markdown_table_lists_every_variable() -> None:
    table = settings_markdown_table()
    assert "`LORAFAAS_HOME`" in table and "`LORAFAAS_PORT`" in table


def test_readme_shows_the_settings_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert settings_markdown_table() in readme, "regenerate the README's configuration table"
