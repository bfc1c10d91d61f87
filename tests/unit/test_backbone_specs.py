"""The backbones setting: name → folder and dtype, the first the default, faults named."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorafaas.backbone_specs import BackboneSpec, parse_backbones
from lorafaas.settings import SettingsError, load_settings


def checkpoint(folder: Path) -> Path:
    """A folder that passes for a checkpoint (the start checks its config.json)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_inline_entries_keep_their_order_and_dtypes() -> None:
    specs = parse_backbones("demo=/m/a, qwen=/m/b:bfloat16 ,llama=~/m/c:half")
    assert specs == (BackboneSpec("demo", Path("/m/a"), "auto"),
                     BackboneSpec("qwen", Path("/m/b"), "bfloat16"),
                     BackboneSpec("llama", Path("~/m/c").expanduser(), "float16"))
    assert [s.dtype_argument for s in specs] == [None, "bfloat16", "float16"]


def test_a_colon_inside_a_path_is_not_a_dtype() -> None:
    assert parse_backbones("a=/m/x:y/z") == (BackboneSpec("a", Path("/m/x:y/z")),)


def test_a_toml_file_lists_backbones_in_order(tmp_path: Path) -> None:
    file = tmp_path / "backbones.toml"
    file.write_text('[small]\npath = "/m/small"\n\n[big]\npath = "/m/big"\ndtype = "bf16"\n')
    assert parse_backbones(str(file)) == (BackboneSpec("small", Path("/m/small")),
                                          BackboneSpec("big", Path("/m/big"), "bfloat16"))


@pytest.mark.parametrize("value,fault", [
    ("demo=/a,demo=/b", "'demo' is listed twice"),
    ("demo=/a:float8", "dtype 'float8' is not one of"),
    ("/just/a/path", "is not name=folder"),
    ("bad name=/a", "backbone name 'bad name'"),
    ("../up=/a", "backbone name '../up'"),
    ("empty=", "has no folder"),
])
def test_bad_lists_name_the_key_the_value_and_the_fault(value: str, fault: str) -> None:
    with pytest.raises(SettingsError, match=f"LORAFAAS_BACKBONES='{value}'") as raised:
        load_settings({"LORAFAAS_BACKBONES": value})
    assert fault in str(raised.value)


def test_bad_toml_files_are_refused(tmp_path: Path) -> None:
    file = tmp_path / "b.toml"
    for text, fault in (("[x]\ndtype = 'bf16'\n", "needs path"), ("[x\n", "not valid TOML"),
                        ("[x]\npath='/a'\nsize=1\n", "unknown keys ['size']"),
                        ("", "no backbone")):
        file.write_text(text)
        with pytest.raises(SettingsError) as raised:
            load_settings({"LORAFAAS_BACKBONES": str(file)})
        assert fault in str(raised.value)
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings({"LORAFAAS_BACKBONES": str(tmp_path / "absent.toml")})


def test_without_a_list_the_one_backbone_is_served_in_its_own_dtype(tmp_path: Path) -> None:
    settings = load_settings({"LORAFAAS_HOME": str(tmp_path)})
    assert settings.backbone_specs == (
        BackboneSpec("demo-backbone", tmp_path / "models" / "demo-backbone", "auto"),)
    assert settings.default_backbone.name == "demo-backbone"


def test_a_list_replaces_the_one_backbone_and_its_first_is_the_default(tmp_path: Path) -> None:
    settings = load_settings({"LORAFAAS_HOME": str(tmp_path),
                              "LORAFAAS_BACKBONES": f"b={tmp_path}/b,a={tmp_path}/a"})
    assert [s.name for s in settings.backbone_specs] == ["b", "a"]
    assert settings.default_backbone.folder == tmp_path / "b"


def test_the_start_refuses_a_missing_folder_naming_key_and_value(tmp_path: Path) -> None:
    checkpoint(tmp_path / "a")
    listed = load_settings({"LORAFAAS_BACKBONES": f"a={tmp_path}/a,b={tmp_path}/b"})
    with pytest.raises(SettingsError, match=f"LORAFAAS_BACKBONES='b={tmp_path}/b'.*no folder"):
        listed.check_backbone_folders()
    (tmp_path / "b").mkdir()
    with pytest.raises(SettingsError, match="holds no config.json"):
        listed.check_backbone_folders()
    (tmp_path / "b" / "config.json").write_text("{}")
    listed.check_backbone_folders()
    single = load_settings({"LORAFAAS_BACKBONE": str(tmp_path / "c")})
    with pytest.raises(SettingsError, match=f"LORAFAAS_BACKBONE='{tmp_path}/c'"):
        single.check_backbone_folders()
