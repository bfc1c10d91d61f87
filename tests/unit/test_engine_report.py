"""The engine benchmark's targets and report, from given medians."""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.engine_report import markdown, plot, targets

MEDIANS = {"floor b1": 6.0, "floor b8": 9.0, "lorafaas b1": 7.0, "lorafaas b4": 8.0,
           "lorafaas b8": 12.0, "peft b1": 11.6, "llama.cpp 1t": 6.3, "llama.cpp 2t": 5.1,
           "prefill": 19.0, "lorafaas ttft": 30.0, "import torch": 1500.0,
           "libraries": 1600.0, "warm overhead p50": 4.0}


def test_targets_are_the_issues_ratios() -> None:
    found = {t.name: t for t in targets(MEDIANS)}
    floor = found["batch-1 decode within 1.3× the floor"]
    assert round(floor.value, 3) == round(7.0 / 6.0, 3) and floor.met
    assert not found["batch-1 decode no slower than llama.cpp, 1 thread"].met
    # (12 / 7) / (9 / 6) = 1.143: within 1.2.
    batched = found["batch-8 ÷ batch-1 step within 1.2× bare matmuls' ratio"]
    assert round(batched.value, 3) == 1.143 and batched.met
    assert not found["warm TTFT within 1.3× one prefill forward"].met
    assert found["libraries step within 1.15× a bare `import torch`"].met
    assert found["warm-path overhead at most 5 ms p50"].met


def test_report_lists_what_is_not_met(tmp_path: Path) -> None:
    text = markdown(MEDIANS, command="bench", machine="cpu", loads="1.0", rounds=5,
                    tokens=65, weights_mb=118, prompt_tokens=8, engine="native", calls=200)
    missed = text.split("## Not met", 1)[1]
    assert "llama.cpp, 1 thread: 1.11 against 1.00" in missed
    assert "warm TTFT" in missed and "import torch" not in missed
    plot(MEDIANS, tmp_path / "engine.png")
    assert (tmp_path / "engine.png").stat().st_size > 0


def test_report_forms_the_cpu_time_check_and_names_the_placement() -> None:
    medians = {**MEDIANS, "floor b1 cpu": 5.0, "lorafaas b1 cpu": 6.0,
               "lorafaas b1 docker cgroup": 14.0}
    text = markdown(medians, command="bench", machine="cpu", loads="1.0", rounds=5,
                    tokens=65, weights_mb=118, prompt_tokens=8, engine="native", calls=200)
    assert "LoRAFaaS batch 1 ÷ floor = 1.20" in text
    assert "in Docker's default cgroup | 14.00 | 2.33 |" in text
    assert "In CPU time" not in markdown(MEDIANS, command="bench", machine="cpu", loads="1.0",
                                         rounds=5, tokens=65, weights_mb=118, prompt_tokens=8,
                                         engine="native", calls=200)
