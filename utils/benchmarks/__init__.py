"""Benchmark registry and measuring tools: `python -m utils.benchmarks`.

A suite is a function `run(long: bool)` that yields records (dicts with the fields of
RECORD_FIELDS, None where a field does not apply), registered with `@register("name")` in the
module that SUITES names. Measure times with `time_ms` (or `time_pair`, against a reference) and memory
with `peak_mib`.
"""
import contextlib
import importlib
import os
import statistics
import sys
import time

import torch

__all__ = ["RECORD_FIELDS", "SUITES", "register", "time_ms", "time_pair", "paired_ratios", "time_rounds", "peak_mib",
           "on_threads", "run", "suites"]

RECORD_FIELDS = ("suite", "kernel", "pattern", "n", "ms", "peak_mib", "density",
                 # sparse suite: speedup over dense SDPA at the same n, and speedup / (1 / density)
                 "speedup", "of_ideal",
                 # sparse suite: the lowest and highest per-round speedup of the paired rounds behind `speedup`
                 "speedup_low", "speedup_high",
                 # sparse suite: torch's intra-op threads, and the median of the dense SDPA calls paired with the record
                 "threads", "dense_ms",
                 # sparse suite, flex on a pattern: (own dense time / sparse time) x density, per round, paired
                 "skipping", "skipping_low", "skipping_high")

# suite name -> module that registers it (imported only when the suite is asked for)
SUITES = {
    "sparse": "utils.sparse_attention",
    "linear": "utils.linear_attention",
}

_REGISTRY = {}


def register(suite):
    """Decorator: register `run(long: bool) -> iterable of records` under `suite`."""
    def decorate(fn):
        _REGISTRY[suite] = fn
        return fn
    return decorate


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_ms(fn, warmup=1, repeat=5):
    """Median wall time of `fn()` in milliseconds, after `warmup` untimed calls."""
    return time_pair(fn, None, warmup=warmup, repeat=repeat)[0]


def time_pair(fn, reference, warmup=1, repeat=5):
    """Median wall times in milliseconds of `fn()` and of `reference()`, called in turn `repeat` times after
    `warmup` untimed calls of each, so that a machine that slows down or speeds up during the run weighs on both
    alike: a ratio of the two is steadier than one of times taken minutes apart. `reference` None: time `fn` only
    (its time is then None)."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    calls = [fn] if reference is None else [fn, reference]
    for _ in range(warmup):
        for call in calls:
            call()
    _sync()
    times = [[] for _ in calls]
    for _ in range(repeat):
        for call, record in zip(calls, times):
            start = time.perf_counter()
            call()
            _sync()
            record.append((time.perf_counter() - start) * 1e3)
    medians = [statistics.median(record) for record in times]
    return medians[0], (medians[1] if reference is not None else None)


def time_rounds(fn, reference, *others, warmup=1, repeat=5):
    """Wall times in milliseconds of `fn()` and of `reference()` (and of each of `others`), one of each per round,
    in turn, after `warmup` untimed calls of each: one list of `repeat` times per function, paired round by round."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    calls = (fn, reference, *others)
    for _ in range(warmup):
        for call in calls:
            call()
    _sync()
    times = tuple([] for _ in calls)
    for _ in range(repeat):
        for call, record in zip(calls, times):
            start = time.perf_counter()
            call()
            _sync()
            record.append((time.perf_counter() - start) * 1e3)
    return times


def paired_ratios(fn, reference, warmup=1, repeat=5):
    """`repeat` ratios reference time / fn time, each from one round that calls `fn` and then `reference`
    (after `warmup` untimed calls of each): their spread shows how much one paired timing can be trusted."""
    fn_ms, reference_ms = time_rounds(fn, reference, warmup=warmup, repeat=repeat)
    return [r / f for f, r in zip(fn_ms, reference_ms)]


@contextlib.contextmanager
def on_threads(threads=None):
    """Run the block on `threads` of torch's intra-op threads (None: leave the number as it is), restored after."""
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _walk(nodes):
    for node in nodes:
        yield node
        yield from _walk(node.children)


@contextlib.contextmanager
def _silent_stderr():
    """Silence file descriptor 2 (the profiler's C++ side prints start/stop lines there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_mib(fn, device="cpu"):
    """Peak memory that torch allocates during one call of `fn()`, in MiB, above what was live.

    On the CPU it replays the allocation events of the torch profiler (each carries the running
    total); on a GPU it reads torch.cuda.max_memory_allocated.
    """
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with _silent_stderr():
        prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        prof.start()
    try:
        fn()
    finally:
        with _silent_stderr():
            prof.stop()
    events = [e for e in _walk(prof.profiler.kineto_results.experimental_event_tree())
              if e.tag == _EventType.Allocation and str(e.extra_fields.device) == "cpu"]
    if not events:
        return 0.0
    events.sort(key=lambda e: e.start_time_ns)
    first = events[0].extra_fields
    baseline = first.total_allocated - first.alloc_size
    return max(0, max(e.extra_fields.total_allocated for e in events) - baseline) / 2**20


def suites():
    """The names of all known suites."""
    return sorted(set(SUITES) | set(_REGISTRY))


def _load(suite):
    if suite not in _REGISTRY:
        if suite not in SUITES:
            raise KeyError(f"unknown benchmark suite {suite!r}; known: {suites() or 'none yet'}")
        importlib.import_module(SUITES[suite])
        if suite not in _REGISTRY:
            raise RuntimeError(f"module {SUITES[suite]} did not register suite {suite!r}")
    return _REGISTRY[suite]


def run(suites_to_run=None, long=False, threads=None):
    """Run suites (all by default); returns a DataFrame with the columns RECORD_FIELDS. `threads`: run every
    suite on that many of torch's intra-op threads (`on_threads`; None: torch's default)."""
    import pandas as pd

    records = []
    with on_threads(threads):
        for suite in suites_to_run or suites():
            for record in _load(suite)(long):
                unknown = set(record) - set(RECORD_FIELDS)
                if unknown:
                    raise ValueError(f"suite {suite!r} produced unknown fields {sorted(unknown)}")
                records.append({field: record.get(field) for field in RECORD_FIELDS})
    return pd.DataFrame(records, columns=list(RECORD_FIELDS))
