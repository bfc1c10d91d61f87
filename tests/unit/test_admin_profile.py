"""`lorafaas admin profile`: its command line, which adapters it profiles, what it prints."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lorafaas.admin import add_admin_parser, profile_command
from lorafaas.admin_profile import _chosen, format_fits
from lorafaas.errors import LoraFaasError
from lorafaas.invoker.prefill_fits import PrefillFit
from lorafaas.wire.prefill_fit import PrefillModel, PrefillProfile

DEPLOYED = {8: ("guest/pirate", Path("/store/a")), 16: ("alice/shout", Path("/store/b"))}


def parse(*argv: str) -> argparse.Namespace:
    """Parse a `lorafaas admin …` command line."""
    parser = argparse.ArgumentParser()
    add_admin_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["admin", *argv])


def test_the_profile_command_takes_repeated_ranks() -> None:
    args = parse("profile", "--rank", "8", "--rank", "16")
    assert (args.admin_command, args.rank) == (profile_command, [8, 16])
    assert parse("profile").rank is None
    assert parse("namespace", "create", "alice").name == "alice"


def test_every_deployed_rank_is_profiled_unless_ranks_are_named() -> None:
    assert _chosen(DEPLOYED, []) == DEPLOYED
    assert _chosen(DEPLOYED, [16]) == {16: DEPLOYED[16]}
    with pytest.raises(LoraFaasError, match=r"rank 4 \(deployed ranks: 8, 16\)"):
        _chosen(DEPLOYED, [4, 8])
    with pytest.raises(LoraFaasError, match="no function is deployed"):
        _chosen({}, [])


def test_the_fits_are_printed_as_tables_with_their_r2() -> None:
    model = PrefillModel(30.0, 10.0)
    profile = PrefillProfile(32, [(b, model.time(b)) for b in range(1, 17)], model, 0.9876)
    printed = format_fits(8, "guest/pirate", [PrefillFit(8, profile, 1)]).splitlines()
    assert printed[:3] == ["adapter rank 8 (adapter of guest/pirate), stored",
                           "prompt length 32 tokens", "  b  measured ms  fitted ms"]
    assert printed[3].split() == ["1", "30.00", "30.00"]
    assert printed[-1] == "fit: T(b) = 30.00 + 10.00·(b−1) ms   R² = 0.9876"
    assert len(printed) == 3 + 16 + 1


def test_the_profile_command_takes_a_backbone_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    from lorafaas.admin_profile import chosen_backbone
    from lorafaas.settings import load_settings

    assert parse("profile", "--backbone", "tiny").backbone == "tiny"
    assert parse("profile").backbone is None
    settings = load_settings({"LORAFAAS_BACKBONES": f"demo={tmp_path}/a,tiny={tmp_path}/b"})
    assert chosen_backbone(settings, None).name == "demo"
    assert chosen_backbone(settings, "tiny").folder == tmp_path / "b"
    with pytest.raises(LoraFaasError, match="unknown backbone 'big'; this deployment serves: "
                                            "demo, tiny"):
        chosen_backbone(settings, "big")
