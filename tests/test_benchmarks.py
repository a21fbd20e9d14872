import json
import subprocess
import sys

import pytest
import torch

from utils import benchmarks
from utils.core import REPO_ROOT


def test_peak_mib_sees_the_largest_live_allocation():
    def work():
        a = torch.ones(1024, 1024)  # 4 MiB
        b = torch.ones(2048, 1024)  # 8 MiB, 12 MiB live together
        del a
        c = torch.ones(1024, 1024)  # back to 12 MiB, not more
        return (b.sum() + c.sum()).item()

    assert benchmarks.peak_mib(work) == pytest.approx(12.0, abs=0.01)


def test_time_ms_counts_calls_and_checks_repeat():
    calls = []
    ms = benchmarks.time_ms(lambda: calls.append(1), warmup=2, repeat=3)
    assert len(calls) == 5 and ms >= 0
    with pytest.raises(ValueError, match="repeat"):
        benchmarks.time_ms(lambda: None, repeat=0)


def test_time_pair_alternates_the_two_calls():
    order = []
    ms, reference_ms = benchmarks.time_pair(lambda: order.append("f"), lambda: order.append("r"), warmup=1, repeat=3)
    assert order == ["f", "r"] * 4 and ms >= 0 and reference_ms >= 0
    assert benchmarks.time_pair(lambda: None, None, repeat=2)[1] is None
    with pytest.raises(ValueError, match="repeat"):
        benchmarks.time_pair(lambda: None, lambda: None, repeat=0)


def test_paired_ratios_alternate_the_two_calls_and_return_one_ratio_per_round():
    order = []
    ratios = benchmarks.paired_ratios(lambda: order.append("f"), lambda: order.append("r"), warmup=1, repeat=4)
    assert order == ["f", "r"] * 5 and len(ratios) == 4 and all(r > 0 for r in ratios)
    with pytest.raises(ValueError, match="repeat"):
        benchmarks.paired_ratios(lambda: None, lambda: None, repeat=0)


def test_registry_runs_suites_and_rejects_unknown(monkeypatch):
    monkeypatch.setattr(benchmarks, "_REGISTRY", {})

    @benchmarks.register("toy")
    def toy(long):
        yield {"suite": "toy", "kernel": "k", "n": 64 if not long else 128, "ms": 1.5}

    df = benchmarks.run(["toy"])
    assert list(df.columns) == list(benchmarks.RECORD_FIELDS)
    assert df.n.tolist() == [64] and df.pattern.isna().all()
    assert benchmarks.run(["toy"], long=True).n.tolist() == [128]
    with pytest.raises(KeyError, match="unknown benchmark suite"):
        benchmarks.run(["nope"])


def test_run_and_on_threads_set_and_restore_the_threads(monkeypatch):
    monkeypatch.setattr(benchmarks, "_REGISTRY", {})
    before = torch.get_num_threads()

    @benchmarks.register("toy")
    def toy(long):
        yield {"suite": "toy", "kernel": "k", "threads": torch.get_num_threads()}

    assert benchmarks.run(["toy"], threads=1).threads.tolist() == [1]
    assert torch.get_num_threads() == before
    with benchmarks.on_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        with benchmarks.on_threads(0):
            pass


def test_every_listed_suite_registers_itself():
    for suite, module in benchmarks.SUITES.items():
        assert benchmarks._load(suite) is not None, module


def test_command_line_prints_json():
    out = subprocess.run([sys.executable, "-m", "utils.benchmarks", "--json", "--suite", "none"],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "unknown benchmark suite" in out.stderr
    if not benchmarks.SUITES:
        out = subprocess.run([sys.executable, "-m", "utils.benchmarks", "--json"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True)
        assert json.loads(out.stdout) == []


def test_time_rounds_pairs_the_calls_round_by_round():
    order = []
    fn_ms, reference_ms = benchmarks.time_rounds(lambda: order.append("f"), lambda: order.append("r"), warmup=2, repeat=3)
    assert order == ["f", "r"] * 5 and len(fn_ms) == len(reference_ms) == 3
    with pytest.raises(ValueError, match="repeat"):
        benchmarks.time_rounds(lambda: None, lambda: None, repeat=0)
