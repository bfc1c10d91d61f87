"""The backbone transport chosen from LORAFAAS_ACCELERATOR and the host's facts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lorafaas.backbone.accelerator import (
    CUDA_IPC,
    TMPFS,
    AcceleratorKind,
    AcceleratorSetting,
    AcceleratorUnavailable,
    HostFacts,
    choose_transport,
    host_facts,
    parse_accelerator,
)
from lorafaas.settings import SettingsError, load_settings

CPU_HOST = HostFacts(driver_gpus=0, torch_cuda_devices=0)
GPU_HOST = HostFacts(driver_gpus=2, torch_cuda_devices=2)
CPU_TORCH_ON_GPU_HOST = HostFacts(driver_gpus=1, torch_cuda_devices=0)


@pytest.mark.parametrize(("value", "expected"), [
    ("auto", AcceleratorSetting(AcceleratorKind.AUTO)),
    ("cpu", AcceleratorSetting(AcceleratorKind.CPU)),
    ("cuda", AcceleratorSetting(AcceleratorKind.CUDA)),
    ("cuda:1", AcceleratorSetting(AcceleratorKind.CUDA, 1)),
    ("auto:3", AcceleratorSetting(AcceleratorKind.AUTO, 3)),
])
def test_the_setting_parses(value: str, expected: AcceleratorSetting) -> None:
    assert parse_accelerator(value) == expected
    assert str(parse_accelerator(value)) == value


@pytest.mark.parametrize("value", ["nvidia", "cuda:", "cuda:x", "cpu:0", "", "CUDA"])
def test_a_bad_setting_fails_at_start_naming_key_and_value(value: str) -> None:
    with pytest.raises(SettingsError, match=f"LORAFAAS_ACCELERATOR={value!r}.*auto, cpu, cuda"):
        load_settings({"LORAFAAS_ACCELERATOR": value})


def test_the_default_is_auto() -> None:
    assert load_settings({}).accelerator == AcceleratorSetting(AcceleratorKind.AUTO)


def test_auto_is_tmpfs_on_a_cpu_host_and_cuda_ipc_on_gpu_0_of_a_gpu_host() -> None:
    auto = parse_accelerator("auto")
    on_cpu = choose_transport(auto, CPU_HOST)
    assert (on_cpu.transport, on_cpu.device) == (TMPFS, None)
    assert "no NVIDIA GPU" in on_cpu.reason
    on_gpu = choose_transport(auto, GPU_HOST)
    assert (on_gpu.transport, on_gpu.device, on_gpu.is_cuda) == (CUDA_IPC, 0, True)


def test_auto_stays_on_tmpfs_where_torch_cannot_use_the_gpu() -> None:
    choice = choose_transport(parse_accelerator("auto"), CPU_TORCH_ON_GPU_HOST)
    assert choice.transport == TMPFS and "CPU build" in choice.reason


def test_cpu_is_tmpfs_even_on_a_gpu_host() -> None:
    assert choose_transport(parse_accelerator("cpu"), GPU_HOST).transport == TMPFS


def test_the_device_index_comes_from_the_setting_never_a_fixed_cuda_0() -> None:
    choice = choose_transport(parse_accelerator("cuda:1"), GPU_HOST)
    assert (choice.transport, choice.device) == (CUDA_IPC, 1)
    assert choice.server_arguments() == ["--transport", CUDA_IPC, "--device", "1"]
    assert choose_transport(parse_accelerator("cpu"), GPU_HOST).server_arguments() == [
        "--transport", TMPFS]


def test_cuda_without_the_device_is_refused_naming_it() -> None:
    with pytest.raises(AcceleratorUnavailable, match="cuda.*device 0.*no NVIDIA GPU"):
        choose_transport(parse_accelerator("cuda"), CPU_HOST)
    with pytest.raises(AcceleratorUnavailable, match="device 2 is not among the 2"):
        choose_transport(parse_accelerator("cuda:2"), GPU_HOST)
    # auto with a missing index falls back to tmpfs instead.
    assert choose_transport(parse_accelerator("auto:2"), GPU_HOST).transport == TMPFS


def _fake_python(folder: Path, prints: str) -> str:
    script = folder / "python"
    script.write_text(f"#!/bin/sh\necho '{prints}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_host_facts_read_the_driver_and_probe_torch_only_where_it_lists_a_gpu(
        tmp_path: Path) -> None:
    driver = tmp_path / "gpus"
    never = _fake_python(tmp_path, "not a number")
    assert host_facts(driver, never) == HostFacts(0, 0)  # no driver: no probe
    (driver / "0000:01:00.0").mkdir(parents=True)
    (driver / "0000:02:00.0").mkdir()
    probe = tmp_path / "probe"
    probe.mkdir()
    assert host_facts(driver, _fake_python(probe, "2")) == HostFacts(2, 2)
    assert host_facts(driver, never) == HostFacts(2, 0)  # a probe that fails: no CUDA
