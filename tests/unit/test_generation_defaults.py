"""The checkpoint's generation config as the runtime reads it (JSON, no transformers): its EOS
ids always, its sampling defaults only under LORAFAAS_GENERATION_DEFAULTS=checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorafaas.runtime.request import parse_request
from lorafaas.runtime.sampling import (
    GREEDY,
    SamplingDefaults,
    eos_ids,
    read_generation_config,
    sampling_defaults,
)
from lorafaas.settings import load_settings

SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 20,
            "eos_token_id": [2, 7]}


def test_greedy_mode_ignores_the_checkpoints_sampling() -> None:
    assert sampling_defaults("greedy", SAMPLING) == GREEDY
    request = parse_request({"prompt": "hi"}, 64, defaults=sampling_defaults("greedy",
                                                                             SAMPLING))
    assert (request.temperature, request.top_p) == (0.0, 1.0)


def test_checkpoint_mode_takes_its_sampling_as_defaults_a_request_overrides() -> None:
    defaults = sampling_defaults("checkpoint", SAMPLING)
    assert defaults == SamplingDefaults(0.7, 0.9)
    request = parse_request({"prompt": "hi"}, 64, defaults=defaults)
    assert (request.temperature, request.top_p) == (0.7, 0.9)
    asked = parse_request({"prompt": "hi", "temperature": 0, "top_p": 0.5}, 64,
                          defaults=defaults)
    assert (asked.temperature, asked.top_p) == (0.0, 0.5)


def test_checkpoint_mode_stays_greedy_where_the_checkpoint_does_not_sample() -> None:
    assert sampling_defaults("checkpoint", {**SAMPLING, "do_sample": False}) == GREEDY
    assert sampling_defaults("checkpoint", {}) == GREEDY
    # do_sample with no temperature: transformers' default, 1.0.
    assert sampling_defaults("checkpoint", {"do_sample": True}) == SamplingDefaults(1.0, 1.0)


def test_a_bad_mode_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="LORAFAAS_GENERATION_DEFAULTS"):
        sampling_defaults("creative", SAMPLING)
    with pytest.raises(ValueError, match="LORAFAAS_GENERATION_DEFAULTS"):
        load_settings({"LORAFAAS_GENERATION_DEFAULTS": "creative"})
    assert load_settings({}).generation_defaults == "greedy"


def test_eos_ids_come_from_the_generation_config_first(tmp_path: Path) -> None:
    assert read_generation_config(tmp_path) == {}
    (tmp_path / "generation_config.json").write_text(json.dumps(SAMPLING))
    config = read_generation_config(tmp_path)
    assert eos_ids(config, {"eos_token_id": 3}, 4) == [2, 7]
    assert eos_ids({}, {"eos_token_id": 3}, 4) == [3]
    assert eos_ids({}, {}, 4) == [4]
    assert eos_ids({}, {}, None) == []


@pytest.mark.parametrize("temperature", [2.2250738585e-313, 5e-324, 1e-6])
def test_a_temperature_too_small_to_divide_by_decodes_greedily(temperature: float) -> None:
    # Dividing the logits by a subnormal temperature overflows to inf (NaN probabilities):
    # the fuzzer's 2.2250738585e-313 once stopped a container answering.
    request = parse_request({"prompt": "hi", "temperature": temperature}, 512)
    assert request.temperature == 0.0
    assert parse_request({"prompt": "hi", "temperature": 1e-5}, 512).temperature == 1e-5
