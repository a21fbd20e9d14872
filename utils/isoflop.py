"""Chinchilla's approach 2 (iso-FLOP profiles) at the scale of a CPU: character-level GPT-2 models
trained to a fixed budget of counted FLOP, with a learning-rate schedule fitted to each run.

Used by scripts/isoflop_sweep.py (which writes data/isoflop/) and by notebook 01, which reads the
records and re-runs one budget. A run: a model of shape (n_layer, d_model, n_head), a budget C in
FLOP counted with `utils.scaling.flops_per_token` (weights, attention scores and output head; not
6ND), steps = round(C / (FLOP per token x tokens per step)), AdamW with linear warm-up over the first
10% of its own steps, then cosine decay to 10% of the peak rate at its own last step.
"""
import math

import numpy as np
import pandas as pd

from . import scaling as sc

__all__ = ["SHAPES", "ISOFLOP", "steps_for_budget", "train_run", "run_budget", "fit_valley",
           "fit_allocation", "bootstrap_allocation", "load_records"]

# (n_layer, d_model, n_head): two layers, widths about a factor 1.4-1.5 apart in d (2x in N)
SHAPES = [(2, 8, 2), (2, 12, 2), (2, 16, 2), (2, 24, 2), (2, 32, 4), (2, 48, 4), (2, 64, 4)]

# the shipped sweep: budgets (counted FLOP), the 5 consecutive shapes centred near N ~ sqrt(C / 120)
# (D ~ 20 N under 6ND), a learning-rate grid per size chosen on validation windows
ISOFLOP = {"budgets": [3e9, 1e10, 3e10], "lrs": [1e-3, 3e-3, 1e-2, 3e-2], "batch_size": 8,
           "block_size": 64, "sizes_per_budget": 5, "seed": 0, "val_fraction": 0.1,
           "val_windows": 48, "eval_points": 10}


def steps_for_budget(budget, shape, *, batch_size, block_size, vocab_size):
    """(steps, counted FLOP) of a run of `shape` spending `budget` FLOP (rounded to whole steps)."""
    if budget <= 0:
        raise ValueError(f"steps_for_budget: budget must be positive, got {budget}")
    n_layer, d_model, _ = shape
    per_token = sc.flops_per_token(n_layer, d_model, block_size, vocab_size)["training"]
    steps = max(1, round(budget / (per_token * batch_size * block_size)))
    return steps, steps * per_token * batch_size * block_size


def shapes_for_budget(budget, k=None, *, block_size=64, vocab_size=75):
    """The `k` consecutive SHAPES whose middle one is nearest (in log N) to sqrt(budget / 120)."""
    k = k or ISOFLOP["sizes_per_budget"]
    target = math.sqrt(budget / 120)
    n = [sc.non_embedding_approx(s[0], s[1]) for s in SHAPES]
    mid = int(np.argmin([abs(math.log(x / target)) for x in n]))
    lo = min(max(0, mid - k // 2), len(SHAPES) - k)
    return SHAPES[lo:lo + k]


def _lr_at(step, total, peak, warmup_ratio=0.1, floor=0.1):
    warmup = max(1, int(warmup_ratio * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def train_run(text, shape, budget, lr, *, batch_size, block_size, seed=0, val_fraction=0.1,
              val_windows=48, eval_points=10, **_):
    """Train one model to `budget` counted FLOP; returns (row dict, curve DataFrame).

    The held-out tail of the text (`val_fraction`) is split in two: its first `val_windows`
    windows ("val", for choosing the learning rate) and the rest ("test", scored once per run)."""
    import torch
    from transformers import GPT2LMHeadModel

    vocab = sc.char_vocab(text)
    split = int(len(text) * (1 - val_fraction))
    train_set = sc.CharWindows(text[:split], vocab, block_size)
    held = sc.CharWindows(text[split:], vocab, block_size)
    val, test = (sc.CharWindows.__new__(sc.CharWindows) for _ in range(2))
    val.windows, test.windows = held.windows[:val_windows], held.windows[val_windows:]
    steps, counted = steps_for_budget(budget, shape, batch_size=batch_size, block_size=block_size,
                                      vocab_size=len(vocab))
    torch.manual_seed(seed)
    n_layer, d_model, n_head = shape
    model = GPT2LMHeadModel(sc.gpt2_config(n_layer, d_model, n_head, vocab_size=len(vocab),
                                           n_positions=block_size))
    counts = sc.count_parameters(model)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr)
    gen = torch.Generator().manual_seed(seed)
    windows = train_set.windows
    eval_at = set(np.unique(np.linspace(0, steps, eval_points + 1).round().astype(int))[1:])
    curve = []
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr)
        idx = torch.randint(0, len(windows), (batch_size,), generator=gen)
        ids = windows[idx]
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step + 1 in eval_at:
            curve.append({"step": step + 1, "tokens": (step + 1) * batch_size * block_size,
                          "train_loss": loss.item(), "val_loss": sc.loss_on(model, val)})
    row = {"budget": budget, "name": f"L{n_layer}-d{d_model}", "n_layer": n_layer, "d_model": d_model,
           "n_head": n_head, "non_embedding": counts["non_embedding"], "total": counts["total"], "lr": lr,
           "steps": steps, "tokens": steps * batch_size * block_size, "flops_counted": counted,
           "flops_6nd": sc.training_flops(counts["non_embedding"], steps * batch_size * block_size),
           "epochs": steps * batch_size * block_size / (len(windows) * block_size),
           "val_loss": curve[-1]["val_loss"], "test_loss": sc.loss_on(model, test)}
    return row, pd.DataFrame(curve)


def run_budget(text, budget, *, lrs=None, shapes=None, threads=1, log=None, **config):
    """Every shape of `shapes` (default `shapes_for_budget`) at every rate of `lrs`; returns
    (runs DataFrame with a `chosen` column: the rate with the lowest val_loss per size, curves)."""
    import torch

    cfg = {k: v for k, v in ISOFLOP.items() if k not in ("budgets", "lrs", "sizes_per_budget")}
    cfg.update(config)
    lrs = lrs or ISOFLOP["lrs"]
    shapes = shapes or shapes_for_budget(budget, block_size=cfg["block_size"])
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows, curves = [], []
    try:
        for shape in shapes:
            for lr in lrs:
                row, curve = train_run(text, shape, budget, lr, **cfg)
                rows.append(row)
                curves.append(curve.assign(budget=budget, name=row["name"], lr=lr))
                if log:
                    log(f"C={budget:.0e} {row['name']} lr={lr:g}: {row['steps']} steps, "
                        f"val {row['val_loss']:.4f}")
    finally:
        torch.set_num_threads(old)
    runs = pd.DataFrame(rows)
    best = runs.groupby("name").val_loss.transform("min")
    runs["chosen"] = runs.val_loss == best
    return runs, pd.concat(curves, ignore_index=True)


def fit_valley(n, loss):
    """Parabola of loss in log10 N through one budget's points; returns dict a, b, c (loss =
    a x^2 + b x + c), n_opt (10^(-b / 2a)), loss_opt and interior (the minimum lies inside the
    sizes and the parabola opens upwards)."""
    x, y = np.log10(np.asarray(n, dtype=float)), np.asarray(loss, dtype=float)
    if x.size < 3 or x.size != y.size:
        raise ValueError(f"fit_valley needs at least 3 (N, loss) pairs, got {x.size} and {y.size}")
    a, b, c = np.polyfit(x, y, 2)
    x_opt = -b / (2 * a) if a > 0 else (x[np.argmin(y)])
    return {"a": a, "b": b, "c": c, "n_opt": 10 ** x_opt, "loss_opt": a * x_opt ** 2 + b * x_opt + c,
            "interior": bool(a > 0 and x.min() < x_opt < x.max())}


def fit_allocation(budgets, n_opts):
    """N_opt = k C^a by least squares in log-log; returns (a, k). D_opt = C / (6 N_opt) then grows
    as C^(1 - a)."""
    a, logk = np.polyfit(np.log10(budgets), np.log10(n_opts), 1)
    return float(a), float(10 ** logk)


def bootstrap_allocation(chosen, n_boot=2000, seed=0, confidence=0.95):
    """Bootstrap over runs: within each budget, resample the chosen runs (one per size) with
    replacement, refit each valley and the exponent a of N_opt ~ C^a. Resamples that leave fewer
    than 3 distinct sizes in a budget, or a valley not opening upwards, are drawn again.
    Returns dict a (on all runs), low, high, and b = 1 - a with its interval."""
    rng = np.random.default_rng(seed)
    groups = [g for _, g in chosen.groupby("budget")]
    budgets = [g.budget.iloc[0] for g in groups]
    point, _ = fit_allocation(budgets, [fit_valley(g.non_embedding, g.test_loss)["n_opt"] for g in groups])
    draws = []
    while len(draws) < n_boot:
        n_opts = []
        for g in groups:
            pick = g.iloc[rng.integers(0, len(g), len(g))]
            if pick.non_embedding.nunique() < 3:
                break
            v = fit_valley(pick.non_embedding, pick.test_loss)
            if v["a"] <= 0:
                break
            n_opts.append(v["n_opt"])
        else:
            draws.append(fit_allocation(budgets, n_opts)[0])
    lo, hi = np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"a": point, "low": float(lo), "high": float(hi), "b": 1 - point, "b_low": 1 - float(hi),
            "b_high": 1 - float(lo), "n_boot": n_boot}


def load_records(folder=None):
    """(runs, curves, meta) of the shipped sweep in data/isoflop/."""
    import json

    from .core import data_path

    folder = folder or data_path("isoflop")
    runs = pd.read_csv(folder / "runs.csv")
    curves = pd.read_csv(folder / "curves.csv")
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    return runs, curves, meta
