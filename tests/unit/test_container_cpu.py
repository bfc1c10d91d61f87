"""Billing's CPU measure: the container's cgroup counter found from the host, v1 and v2, and
its split among the requests of a run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lorafaas.billing.metering import BUSY_KEY, CGROUP_CPU, CPU_KEY, WALL_TIME, activation_usage
from lorafaas.invoker.backend import ContainerInfo
from lorafaas.invoker.cgroup_cpu import ContainerCpu, cgroup_mounts, process_cgroups
from lorafaas.invoker.cpu_shares import RunCpu, with_cpu
from lorafaas.names import QualifiedName

ID = "ab" * 32
V1_MOUNTINFO = """31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / {root}/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / {root}/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / {root}/memory rw,relatime - cgroup cgroup rw,memory
"""
V1_CGROUP = f"4:memory:/docker/{ID}\n2:cpuacct:/docker/{ID}\n1:cpu:/docker/{ID}\n0::/docker/{ID}\n"


def fake_host(tmp_path: Path, mountinfo: str, cgroup: str | None, pid: int = 42) -> Path:
    """A /proc with mountinfo and the container's process; returns the proc folder."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(mountinfo.format(root=tmp_path / "cg"))
    if cgroup is not None:
        (proc / str(pid)).mkdir()
        (proc / str(pid) / "cgroup").write_text(cgroup)
    return proc


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v1_counter_is_found_from_the_process_and_read_in_nanoseconds(tmp_path: Path) -> None:
    proc = fake_host(tmp_path, V1_MOUNTINFO, V1_CGROUP)
    counter = tmp_path / "cg" / "cpuacct" / "docker" / ID / "cpuacct.usage"
    write(counter, "2500000000\n")
    cpu = ContainerCpu(proc)
    assert cpu.seconds(ContainerInfo(ID, "c", 42)) == pytest.approx(2.5)
    write(counter, "4000000000\n")  # read afresh each time, the path remembered
    assert cpu.seconds(ContainerInfo(ID, "c", 42)) == pytest.approx(4.0)


def test_v2_counter_is_usage_usec_of_cpu_stat_found_by_the_systemd_layout(
        tmp_path: Path) -> None:
    # The process is gone (no /proc/PID): the id's usual layouts are tried.
    proc = fake_host(tmp_path, "40 23 0:27 / {root} rw - cgroup2 cgroup2 rw\n", None)
    write(tmp_path / "cg" / "system.slice" / f"docker-{ID}.scope" / "cpu.stat",
          "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert ContainerCpu(proc).seconds(ContainerInfo(ID, "c", 42)) == pytest.approx(1.5)


def test_an_unreadable_counter_answers_none_and_is_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    proc = fake_host(tmp_path, V1_MOUNTINFO, V1_CGROUP)
    cpu = ContainerCpu(proc)
    with caplog.at_level(logging.WARNING, "lorafaas.invoker.cgroup_cpu"):
        assert cpu.seconds(ContainerInfo(ID, "c", 42)) is None
        assert cpu.seconds(ContainerInfo("cd" * 32, "d", 43)) is None
    assert len(caplog.records) == 1 and "billed by wall time" in caplog.records[0].message


def test_mountinfo_and_proc_cgroup_parsing() -> None:
    mounts = cgroup_mounts(V1_MOUNTINFO.format(root="/sys/fs/cgroup")
                           + "35 31 0:32 /sub /mnt/cg rw - cgroup cgroup rw,cpu,cpuacct\n")
    assert [(str(m.point), m.root, m.version) for m in mounts] == [
        ("/sys/fs/cgroup/cpuacct", "/", 1), ("/mnt/cg", "/sub", 1)]
    assert process_cgroups(V1_CGROUP) == {1: f"/docker/{ID}", 2: f"/docker/{ID}"}


class Counter:
    """A CPU counter and a clock the test moves."""

    def __init__(self) -> None:
        self.cpu: float | None = 10.0
        self.now = 100.0

    def advance(self, wall_s: float, cpu_s: float) -> None:
        self.now += wall_s
        assert self.cpu is not None
        self.cpu += cpu_s


def test_a_lone_request_is_billed_the_whole_difference() -> None:
    c = Counter()
    run = RunCpu(lambda: c.cpu, lambda: c.now)
    c.advance(2.0, 0.7)
    assert run.ended(run.start, None, last=True) == pytest.approx(0.7)


def test_a_batch_is_split_by_compute_shares_and_adds_up_to_the_counter() -> None:
    c = Counter()
    run = RunCpu(lambda: c.cpu, lambda: c.now)
    # Three rows start together; the container computes at 0.5 CPU-s per second throughout
    # (a neighbour holds the other half of a core). The short row ends at 1 s with a third
    # of the steps' time, the middle at 2 s with 0.8 s, the long one at 3 s.
    c.advance(1.0, 0.5)
    short = run.ended(run.start, 1000 / 3, last=False)
    c.advance(1.0, 0.5)
    middle = run.ended(run.start, 800.0, last=False)
    c.advance(1.0, 0.5)
    long = run.ended(run.start, 1866.0, last=True)
    assert short is not None and middle is not None and long is not None
    assert short == pytest.approx(0.5 / 3) and middle == pytest.approx(1.0 * 0.8 / 2)
    assert short + middle + long == pytest.approx(1.5)  # exactly what the container used


def test_no_counter_means_no_cpu_measure() -> None:
    c = Counter()
    run = RunCpu(lambda: c.cpu, lambda: c.now)
    c.cpu = None
    assert run.ended(run.start, None, last=True) is None


def test_the_runtime_cannot_claim_the_hosts_measure() -> None:
    claimed = {"ttft": 5.0, CPU_KEY: 0.001, BUSY_KEY: 0.001}
    assert with_cpu(claimed, None, 2) == {"ttft": 5.0}
    assert with_cpu(claimed, 0.8, 2) == {"ttft": 5.0, CPU_KEY: 800.0, BUSY_KEY: 400.0}


def test_cpu_time_bills_the_accelerator_and_memory_where_the_host_measured_it() -> None:
    timings = {"prefill": 500.0, "decode": 4500.0, "total": 5000.0, CPU_KEY: 900.0,
               BUSY_KEY: 450.0}
    result = {"usage": {"prompt_tokens": 9, "completion_tokens": 21}}
    usage = activation_usage(timings, 2048, result, cpus_per_accelerator=2)
    assert (usage.accelerator_s, usage.gb_s, usage.cpu_s) == pytest.approx((0.45, 0.9, 0.9))
    assert usage.measure == CGROUP_CPU
    # On an accelerator host (no CPUs per accelerator) the CPU time is not the measure.
    wall = activation_usage(timings, 2048, result)
    assert (wall.accelerator_s, wall.measure, wall.cpu_s) == (pytest.approx(5.0), WALL_TIME, None)


def test_the_record_says_which_measure_billed_it() -> None:
    from lorafaas.billing.ledger import meter_activation
    from lorafaas.billing.prices import PriceSheet
    from lorafaas.invoker.invoker import ActivationRequest, ActivationResult
    from lorafaas.invoker.pool import FunctionRef

    prices = PriceSheet("cpu", accelerator_hour=3.6, gb_second=0.001, prompt_mtok=0.0,
                        completion_mtok=0.0)
    request = ActivationRequest("id1", "ns", "fn", "0.0.1", "subject",
                                FunctionRef("ns/fn@0.0.1:d", QualifiedName.from_path("ns/fn"), Path("/x"), 1024),
                                {}, {"timeout": 1000}, 0.0)
    timings = {"prefill": 250.0, "decode": 750.0, "total": 1000.0}

    def annotation(measured: dict[str, float]) -> dict[str, object]:
        result = ActivationResult(1000, 3000, 0, {"result": {}}, [], [],
                                  {**timings, **measured})
        return meter_activation(request, result, prices).annotation

    by_cpu = annotation({CPU_KEY: 300.0, BUSY_KEY: 300.0})
    assert (by_cpu["measure"], by_cpu["cpuSeconds"], by_cpu["acceleratorSeconds"]) == \
        ("cgroup-cpu", 0.3, 0.15)
    by_wall = annotation({})  # the host could not read the counter
    assert (by_wall["measure"], by_wall["acceleratorSeconds"]) == ("wall-time", 1.0)
    assert "cpuSeconds" not in by_wall
