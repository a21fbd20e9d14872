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

__all__ = ["SHAPES", "ISOFLOP", "steps_for_budget", "shapes_for_budget", "train_run", "run_budget",
           "fit_valley", "fit_allocation", "valleys", "fit_loss_law", "LAW_STARTS", "bootstrap_allocation", "frontier_exponent", "frontier_sensitivity",
           "gap_at_compute", "fixed_step_exponents", "design_table", "FIXED_STEP", "run_fixed_steps", "load_fixed_step_records",
           "load_records", "plot_isoflop_runs", "SEED_RECORDS", "HOFFMANN_APPROACH2", "load_seed_records", "seed_allocations",
           "local_slopes", "repetition_table"]

# (n_layer, d_model, n_head): two layers, widths about a factor 1.3-1.5 apart in d (about 2x in N)
SHAPES = [(2, 4, 1), (2, 6, 2), (2, 8, 2), (2, 12, 2), (2, 16, 2), (2, 24, 2), (2, 32, 4), (2, 48, 4),
          (2, 64, 4)]

# the shipped sweep: budgets (counted FLOP), the 5 consecutive shapes centred near
# N ~ sqrt(C / centre), a learning-rate grid per size chosen on validation windows. centre = 3000:
# a pilot centred on Chinchilla's ratio (N ~ sqrt(C / 120), D ~ 20 N) found the lowest loss at the
# smallest size of every budget (3e9-3e10), near sqrt(C / 3000) at 1e10 and 3e10. The pilot's
# runs are not shipped: it only placed the sizes, and the shipped records show the valleys inside them.
ISOFLOP = {"budgets": [1e10, 3e10, 1e11], "lrs": [5e-3, 1.5e-2, 4.5e-2], "batch_size": 8,
           "block_size": 64, "sizes_per_budget": 5, "centre": 3000, "seed": 0, "val_fraction": 0.1,
           "val_windows": 48, "eval_points": 10}

# Kaplan's design (fixed steps, one shared rate, frontier read off mid-run checkpoints) run through the
# same training code as the iso-FLOP sweep: its batch, its sampling with replacement, its schedule with
# a floor at 10% of the peak, its two-layer SHAPES and its grid of rates. 600 steps of 8 x 64 characters
# are the 307,200 characters of every run of the notebook's fixed-step sweep (`utils.scaling.SWEEPS`);
# `min_step` = 100 drops the same first sixth of each run (50 of its 300 steps) from the frontier.
FIXED_STEP = {"steps": 600, "eval_every": 25, "min_step": 100, "seeds": [0, 1, 2]}


def steps_for_budget(budget, shape, *, batch_size, block_size, vocab_size):
    """(steps, counted FLOP) of a run of `shape` spending `budget` FLOP (rounded to whole steps)."""
    if budget <= 0:
        raise ValueError(f"steps_for_budget: budget must be positive, got {budget}")
    n_layer, d_model, _ = shape
    per_token = sc.flops_per_token(n_layer, d_model, block_size, vocab_size)["training"]
    steps = max(1, round(budget / (per_token * batch_size * block_size)))
    return steps, steps * per_token * batch_size * block_size


def shapes_for_budget(budget, k=None, *, centre=None, block_size=64, vocab_size=75):
    """The `k` consecutive SHAPES whose middle one is nearest (in log N) to sqrt(budget / centre)."""
    k = k or ISOFLOP["sizes_per_budget"]
    target = math.sqrt(budget / (centre or ISOFLOP["centre"]))
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
              val_windows=48, eval_points=10, threads=None, steps=None, eval_every=None, **_):
    """Train one model to `budget` counted FLOP; returns (row dict, curve DataFrame). `threads`: torch
    CPU threads for this run (the shipped sweep used 1; the previous setting is restored afterwards).

    The held-out tail of the text (`val_fraction`) is split in two: its first `val_windows`
    windows ("val", for choosing the learning rate) and the rest ("test", scored once per run).
    With `steps` (Kaplan's fixed-step design) the run takes that many steps whatever its size
    (`budget` is ignored; the row's budget is the compute it spent) and is evaluated every
    `eval_every` steps on both the val and the test windows (curve columns val_loss, test_loss);
    every curve has the counted FLOP spent so far (flops_counted)."""
    import torch

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads or old_threads)
    try:
        return _train_run(text, shape, budget, lr, batch_size=batch_size, block_size=block_size, seed=seed,
                          val_fraction=val_fraction, val_windows=val_windows, eval_points=eval_points,
                          fixed_steps=steps, eval_every=eval_every)
    finally:
        torch.set_num_threads(old_threads)


def _train_run(text, shape, budget, lr, *, batch_size, block_size, seed, val_fraction, val_windows,
               eval_points, fixed_steps=None, eval_every=None):
    import torch
    from transformers import GPT2LMHeadModel

    vocab = sc.char_vocab(text)
    split = int(len(text) * (1 - val_fraction))
    train_set = sc.CharWindows(text[:split], vocab, block_size)
    held = sc.CharWindows(text[split:], vocab, block_size)
    val, test = (sc.CharWindows.__new__(sc.CharWindows) for _ in range(2))
    val.windows, test.windows = held.windows[:val_windows], held.windows[val_windows:]
    per_step = sc.flops_per_token(shape[0], shape[1], block_size, len(vocab))["training"] * batch_size * block_size
    if fixed_steps:
        steps = int(fixed_steps)
        budget = counted = steps * per_step
        eval_every = eval_every or max(1, steps // eval_points)
        eval_at = set(range(eval_every, steps + 1, eval_every)) | {steps}
    else:
        steps, counted = steps_for_budget(budget, shape, batch_size=batch_size, block_size=block_size,
                                          vocab_size=len(vocab))
        eval_at = set(np.unique(np.linspace(0, steps, eval_points + 1).round().astype(int))[1:])
    torch.manual_seed(seed)
    n_layer, d_model, n_head = (int(v) for v in shape)
    model = GPT2LMHeadModel(sc.gpt2_config(n_layer, d_model, n_head, vocab_size=len(vocab),
                                           n_positions=block_size))
    counts = sc.count_parameters(model)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr)
    gen = torch.Generator().manual_seed(seed)
    windows = train_set.windows
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
                          "flops_counted": (step + 1) * per_step, "train_loss": loss.item(),
                          "val_loss": sc.loss_on(model, val)}
                         | ({"test_loss": sc.loss_on(model, test)} if fixed_steps else {}))
    row = {"budget": budget, "name": f"L{n_layer}-d{d_model}", "n_layer": n_layer, "d_model": d_model,
           "n_head": n_head, "non_embedding": counts["non_embedding"], "total": counts["total"], "lr": lr,
           "steps": steps, "tokens": steps * batch_size * block_size, "flops_counted": counted,
           "flops_6nd": sc.training_flops(counts["non_embedding"], steps * batch_size * block_size),
           "epochs": steps * batch_size * block_size / (len(windows) * block_size),
           "val_loss": curve[-1]["val_loss"],
           "test_loss": curve[-1]["test_loss"] if fixed_steps else sc.loss_on(model, test)}
    return row, pd.DataFrame(curve)


def run_fixed_steps(text, *, steps, lrs=None, shapes=None, seed=0, eval_every=25, threads=1, log=None,
                    **config):
    """Kaplan's design on this module's training code: every shape of `shapes` (default all SHAPES)
    for the same `steps` at every rate of `lrs` (default the iso-FLOP grid), evaluated every
    `eval_every` steps. Returns (runs, curves); runs has a column `chosen`: the one rate shared by
    every size, the one with the lowest validation loss averaged over the sizes."""
    cfg = {k: v for k, v in ISOFLOP.items() if k not in ("budgets", "lrs", "sizes_per_budget", "centre", "seed")}
    cfg.update(config)
    rows, curves = [], []
    for shape in shapes or SHAPES:
        for lr in lrs or ISOFLOP["lrs"]:
            row, curve = train_run(text, shape, None, lr, steps=steps, eval_every=eval_every, seed=seed,
                                   threads=threads, **cfg)
            rows.append({**row, "seed": seed})
            curves.append(curve.assign(seed=seed, name=row["name"], lr=lr))
            if log:
                log(f"seed {seed} {row['name']} lr={lr:g}: {steps} steps, val {row['val_loss']:.4f}")
    runs = pd.DataFrame(rows)
    runs["chosen"] = runs.lr == runs.groupby("lr").val_loss.mean().idxmin()
    return runs, pd.concat(curves, ignore_index=True)


def load_fixed_step_records(folder=None):
    """The fixed-step sweep on this module's training code (scripts/isoflop_sweep.py --fixed-steps,
    data/isoflop_fixed_step/): ({seed: (results, curves)}, runs, meta). results: the runs at the rate
    chosen for that seed; curves: their evaluations with eval_loss = the loss on the test windows,
    the form `frontier_exponent`, `frontier_sensitivity` and `gap_at_compute` read."""
    from .core import data_path

    runs, curves, meta = load_records(folder or data_path("isoflop_fixed_step"))
    sweeps = {}
    for seed, r in runs[runs.chosen].groupby("seed"):
        c = curves[(curves.seed == seed) & (curves.lr == r.lr.iloc[0])]
        sweeps[int(seed)] = (r.sort_values("non_embedding").reset_index(drop=True),
                             c.assign(eval_loss=c.test_loss).reset_index(drop=True))
    return sweeps, runs, meta


def run_budget(text, budget, *, lrs=None, shapes=None, threads=1, log=None, **config):
    """Every shape of `shapes` (default `shapes_for_budget`) at every rate of `lrs`; returns
    (runs DataFrame with a `chosen` column: the rate with the lowest val_loss per size, curves)."""
    import torch

    cfg = {k: v for k, v in ISOFLOP.items() if k not in ("budgets", "lrs", "sizes_per_budget", "centre")}
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


def _valley_row(g, n_col, loss_col):
    v = fit_valley(g[n_col], g[loss_col])
    # tokens of a run of size n_opt at this budget: log D is linear in log N within one budget
    slope, icpt = np.polyfit(np.log10(g[n_col]), np.log10(g.tokens), 1)
    return {"budget": g.budget.iloc[0], "n_opt": v["n_opt"], "d_opt": 10 ** (icpt + slope * np.log10(v["n_opt"])),
            "loss_opt": v["loss_opt"], "interior": v["interior"], "sizes": g[n_col].nunique()}


# starts of L-BFGS-B for `fit_loss_law`, as (a, b, e, alpha, beta) with A = exp(a), B = exp(b), E = exp(e):
# 2 x 2 x 2 x 2 x 2 = 32 points. Hoffmann et al. (appendix D.2) started from a finer grid of 4,500:
# alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}.
LAW_STARTS = {"a": (0.0, 10.0), "b": (0.0, 10.0), "e": (0.0, 0.5), "alpha": (0.5, 1.0), "beta": (0.5, 1.0)}


def law_objective(p, log_n, log_d, log_loss, delta):
    """Huber loss of log L(N, D) = LSE(a - alpha log N, b - beta log D, e) against log loss, and its
    gradient in p = (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = p
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    r = top + np.log(total) - log_loss
    weights /= total  # d(prediction) / d(each term)
    small = np.abs(r) <= delta
    value = np.where(small, 0.5 * r ** 2, delta * (np.abs(r) - 0.5 * delta)).sum()
    slope = np.clip(r, -delta, delta)  # Huber'(r)
    grad = np.array([(slope * weights[0]).sum(), (slope * weights[1]).sum(), (slope * weights[2]).sum(),
                     -(slope * weights[0] * log_n).sum(), -(slope * weights[1] * log_d).sum()])
    return value, grad


def fit_loss_law(n, d, loss, *, delta=1e-3, starts=None):
    """Chinchilla's approach 3: fit L(N, D) = E + A / N^alpha + B / D^beta to runs (size n, tokens d,
    loss) as Hoffmann et al. did (their section 3.3 and appendix D.2): minimise the Huber loss (`delta`)
    of log L written as a log-sum-exp, LSE(a - alpha log N, b - beta log D, e), against the log of the
    measured loss, with L-BFGS-B from every point of a grid of starts (`starts`, default `LAW_STARTS`),
    keeping the lowest minimum. Returns E, A, B, alpha, beta, a = beta / (alpha + beta) and
    b = alpha / (alpha + beta) (the exponents of N_opt and D_opt in C when C is proportional to N D),
    objective, starts (how many) and predict(n, d)."""
    import itertools

    from scipy.optimize import minimize

    n, d, loss = (np.asarray(v, dtype=float).ravel() for v in (n, d, loss))
    if not n.size == d.size == loss.size:
        raise ValueError(f"fit_loss_law: n, d and loss must have the same length, got {n.size}, {d.size}, {loss.size}")
    if n.size < 5:
        raise ValueError(f"fit_loss_law fits 5 parameters and needs at least 5 runs, got {n.size}")
    for name, v in (("n", n), ("d", d), ("loss", loss)):
        if not (np.isfinite(v).all() and (v > 0).all()):
            raise ValueError(f"fit_loss_law: every {name} must be positive and finite")
    if not delta > 0:
        raise ValueError(f"fit_loss_law: delta must be positive, got {delta}")
    starts = starts or LAW_STARTS
    grid = list(itertools.product(*(starts[k] for k in ("a", "b", "e", "alpha", "beta"))))
    args = (np.log(n), np.log(d), np.log(loss), delta)
    best = min((minimize(law_objective, p0, args=args, jac=True, method="L-BFGS-B") for p0 in grid),
               key=lambda res: res.fun)
    a, b, e, alpha, beta = (float(v) for v in best.x)
    law = {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta,
           "a": beta / (alpha + beta), "b": alpha / (alpha + beta), "objective": float(best.fun),
           "starts": len(grid)}
    law["predict"] = lambda n, d: law["E"] + law["A"] / np.asarray(n, float) ** alpha + law["B"] / np.asarray(d, float) ** beta
    return law


def bootstrap_loss_law(n, d, loss, *, n_boot=100, seed=0, confidence=0.95, delta=1e-3):
    """How well the runs determine approach 3's exponent a = beta / (alpha + beta): `fit_loss_law` on
    all runs, then `n_boot` refits on runs resampled with replacement, each started from the fit to
    all runs (one start, so that a refit is cheap: it shows how far resampling moves that minimum).
    Returns the fit to all runs (`law`) and the percentile interval of a (`a_low`, `a_high`) with the
    resampled values (`a_boot`)."""
    law = fit_loss_law(n, d, loss, delta=delta)
    n, d, loss = (np.asarray(v, dtype=float).ravel() for v in (n, d, loss))
    start = {"a": (math.log(law["A"]),), "b": (math.log(law["B"]),), "e": (math.log(law["E"]),),
             "alpha": (law["alpha"],), "beta": (law["beta"],)}
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n.size, n.size) for _ in range(n_boot)]
    a_boot = np.array([fit_loss_law(n[i], d[i], loss[i], delta=delta, starts=start)["a"] for i in draws])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(a_boot, [tail, 100 - tail])
    return {"law": law, "a_low": float(low), "a_high": float(high), "a_boot": a_boot}


def valleys(chosen, n_col="non_embedding", loss_col="test_loss"):
    """One row per budget of the chosen runs (one per size): the parabola's optimum n_opt, the tokens
    d_opt a run of that size gets within the budget, loss_opt, interior (the minimum lies inside the
    sizes tried). `n_col`: "non_embedding" (Kaplan's N) or "total" (Chinchilla's N)."""
    for col in (n_col, loss_col, "budget", "tokens"):
        if col not in chosen.columns:
            raise ValueError(f"valleys: chosen runs have no column {col!r}")
    return pd.DataFrame([_valley_row(g, n_col, loss_col) for _, g in chosen.groupby("budget")])


def bootstrap_allocation(chosen, n_col="non_embedding", loss_col="test_loss", n_boot=2000, seed=0,
                         confidence=0.95):
    """Exponents a (N_opt ~ C^a) and b (D_opt ~ C^b) with percentile intervals from a parametric
    bootstrap: each budget's parabola (loss against log10 N) gives fitted losses, the pooled residual
    standard deviation of the parabolas (n - 3 degrees of freedom each) gives the noise; every draw adds
    fresh noise to the fitted losses, refits the valleys (draws whose parabola opens downwards are drawn
    again) and both power laws. The interval covers the scatter of the final losses about their valleys
    (seed, batch order, the learning-rate grid), not the choice of a parabola or of the budgets.
    Returns a, low, high, b, b_low, b_high, noise (the residual sd), n_boot and table (`valleys`)."""
    rng = np.random.default_rng(seed)
    groups = [g for _, g in chosen.groupby("budget")]
    if len(groups) < 2 or min(len(g) for g in groups) < 4:
        raise ValueError("bootstrap_allocation needs at least 2 budgets of at least 4 sizes each")
    table = valleys(chosen, n_col, loss_col)
    a, _ = fit_allocation(table.budget, table.n_opt)
    b, _ = fit_allocation(table.budget, table.d_opt)
    arrays, rss, dof = [], 0.0, 0
    for g in groups:
        x, y = np.log10(g[n_col].to_numpy(float)), g[loss_col].to_numpy(float)
        coef = np.polyfit(x, y, 2)
        fitted = np.polyval(coef, x)
        rss, dof = rss + float(((y - fitted) ** 2).sum()), dof + len(x) - 3
        slope, icpt = np.polyfit(x, np.log10(g.tokens.to_numpy(float)), 1)
        arrays.append((x, fitted, slope, icpt))
    noise = (rss / dof) ** 0.5
    log_c = np.log10([g.budget.iloc[0] for g in groups])
    draws, tries = [], 0
    while len(draws) < n_boot:
        tries += 1
        if tries > 50 * n_boot:
            raise RuntimeError("bootstrap_allocation: too few draws with a valley in every budget")
        x_opts, d_opts = [], []
        for x, fitted, slope, icpt in arrays:
            a2, b1, _ = np.polyfit(x, fitted + rng.normal(0, noise, x.size), 2)
            if a2 <= 0:
                break
            x_opts.append(-b1 / (2 * a2))
            d_opts.append(icpt + slope * x_opts[-1])
        else:
            draws.append((np.polyfit(log_c, x_opts, 1)[0], np.polyfit(log_c, d_opts, 1)[0]))
    draws = np.array(draws)
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    (a_lo, a_hi), (b_lo, b_hi) = np.quantile(draws[:, 0], q), np.quantile(draws[:, 1], q)
    return {"a": a, "low": float(a_lo), "high": float(a_hi), "b": b, "b_low": float(b_lo),
            "b_high": float(b_hi), "noise": noise, "n_boot": n_boot, "table": table}


def frontier_exponent(curves, sizes, *, min_step=50, x="flops_counted", n_bins=12):
    """Kaplan's way to the allocation, from a fixed-step sweep: the compute-efficient frontier of the
    evaluations (after `min_step`; `utils.scaling.compute_frontier`), and the slope a of log N against
    log C over its points, N the non-embedding size of the run that holds each point. `sizes`: a
    Series name -> N. Returns (a, frontier with its column n)."""
    frontier = sc.compute_frontier(curves[curves.step >= min_step], x=x, n_bins=n_bins)
    frontier["n"] = frontier["name"].map(sizes)
    a, _ = np.polyfit(np.log10(frontier.flops), np.log10(frontier.n), 1)
    return float(a), frontier


def frontier_sensitivity(sweeps, *, n_bins=(6, 12, 24), min_steps=(25, 50, 100), x="flops_counted"):
    """How much Kaplan's a (`frontier_exponent`) depends on choices a reader could make differently.
    `sweeps`: {seed: (results, curves)} of fixed-step sweeps. One row per (frontier bins, first step
    counted), one column per seed, then a last row "final points": the slope of log N against log C
    through each run's last evaluation (every run sees the same tokens there, so C grows almost as N
    and the slope is near 1 by construction)."""
    rows = {}
    for bins in n_bins:
        for first in min_steps:
            rows[(f"{bins} bins", f"from step {first}")] = {
                f"seed {k}": frontier_exponent(c, r.set_index("name").non_embedding, min_step=first,
                                               x=x, n_bins=bins)[0]
                for k, (r, c) in sweeps.items()}
    final = {}
    for k, (r, c) in sweeps.items():
        last = c.loc[c.groupby("name").step.idxmax()]
        n = last["name"].map(r.set_index("name").non_embedding)
        final[f"seed {k}"] = float(np.polyfit(np.log10(last[x]), np.log10(n), 1)[0])
    rows[("final points", "")] = final
    table = pd.DataFrame(rows).T
    table.index.names = ["frontier", "evaluations"]
    return table


def gap_at_compute(chosen, sweeps, *, min_step=50, x="flops_counted"):
    """Both designs at equal compute. For each budget C of the iso-FLOP runs `chosen` (rate chosen
    per size) and for the largest compute any fixed-step run of `sweeps` ({seed: (results, curves)})
    spent: the iso-FLOP run with budget <= C that has the lowest validation loss (columns "iso-FLOP
    run", "lr", "val", its test loss "test" and, where `chosen` has tokens, the "characters" it trained
    on), and per seed ("seed k") the lowest held-out loss any fixed-step evaluation (from `min_step`
    on) reached with at most C counted FLOP (the fixed-step frontier at C). The run is picked on
    validation and compared on its test loss; the two losses are on overlapping, not identical,
    windows of the held-out tail. Column "gap" = mean fixed-step minus the iso-FLOP test loss."""
    largest = max(c[x].max() for _, c in sweeps.values())
    rows = []
    for budget in sorted({*chosen.budget.unique(), largest}):
        runs = chosen[chosen.budget <= budget * (1 + 1e-9)]
        best = runs.loc[runs.val_loss.idxmin()]
        row = {"C (FLOP)": f"{budget:.2g}", "iso-FLOP run": f"{best['name']} at {best.budget:.0e}",
               "lr": best.lr, "val": best.val_loss, "test": best.test_loss}
        if "tokens" in best:
            row["characters"] = int(best.tokens)
        for k, (_, c) in sweeps.items():
            seen = c[(c.step >= min_step) & (c[x] <= budget * (1 + 1e-9))]
            row[f"seed {k}"] = seen.eval_loss.min() if len(seen) else np.nan
        fixed = [row[f"seed {k}"] for k in sweeps]
        row["gap"] = float(np.nanmean(fixed)) - best.test_loss if not np.isnan(fixed).all() else np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("C (FLOP)")


def rate_gaps(iso_runs, *, shared, min_step, folder=None):
    """What the learning rate does to `gap_at_compute`'s gap against the two-layer fixed-step sweep
    (data/isoflop_fixed_step/, test windows), one column per way of setting the rates, mean over its seeds:
    both designs at the one rate `shared` (the iso-FLOP runs of `iso_runs` at that rate, picked on validation),
    the iso-FLOP rate chosen per size against the fixed-step sweep at `shared`, and against the fixed-step
    frontier free to take any rate of its grid at each compute (the lowest loss over all its rates)."""
    from .core import data_path

    _, curves, _ = load_records(folder or data_path("isoflop_fixed_step"))
    curves = curves.assign(eval_loss=curves.test_loss)
    at_shared = {s: (None, c[c.lr == shared]) for s, c in curves.groupby("seed")}
    any_rate = {s: (None, c) for s, c in curves.groupby("seed")}
    tuned = iso_runs[iso_runs.chosen]
    return pd.DataFrame({
        f"both at lr {shared:g}": gap_at_compute(iso_runs[iso_runs.lr == shared], at_shared, min_step=min_step).gap,
        f"iso-FLOP rate per size, fixed-step at {shared:g}": gap_at_compute(tuned, at_shared, min_step=min_step).gap,
        "iso-FLOP rate per size, fixed-step any rate": gap_at_compute(tuned, any_rate, min_step=min_step).gap})


def fixed_step_exponents(sweeps, *, min_step):
    """a of N_opt ~ C^a read off each seed's fixed-step frontier (`frontier_exponent`, evaluations from
    `min_step` on), as the row of `utils.scaling.seed_table`: one column per seed, then the mean, the sd
    and a 95% t-interval for the mean. `sweeps`: {seed: (results, curves)}."""
    return sc.seed_table({s: {"a": frontier_exponent(c, r.set_index("name").non_embedding, min_step=min_step)[0]}
                          for s, (r, c) in sweeps.items()})["a"]


def design_table(rows):
    """The allocation exponent a of N_opt ~ C^a from several designs, one row each: `rows` maps a
    label to a row of `utils.scaling.seed_table` (mean and t-interval over its seeds), to a fit of
    `bootstrap_allocation` (parametric bootstrap), or to (a, low, high, what the interval covers)."""
    def as_row(v):
        if isinstance(v, pd.Series):
            seeds = sum(str(k).startswith("seed ") for k in v.index)
            return (v["mean"], v["95% low"], v["95% high"], f"{seeds} seeds (t)")
        if isinstance(v, dict):
            return (v["a"], v["low"], v["high"], "parametric bootstrap")
        return tuple(v)

    table = pd.DataFrame({k: as_row(v) for k, v in rows.items()}, index=["a", "95% low", "95% high", "interval over"]).T
    return table.astype({"a": float, "95% low": float, "95% high": float})


def load_records(folder=None):
    """(runs, curves, meta) of the shipped sweep in data/isoflop/."""
    import json

    from .core import data_path

    folder = folder or data_path("isoflop")
    runs = pd.read_csv(folder / "runs.csv")
    curves = pd.read_csv(folder / "curves.csv")
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    return runs, curves, meta


# the folders that hold iso-FLOP runs, each written by scripts/isoflop_sweep.py with its command in meta.json:
# data/isoflop (seed 0, every budget, the grid of ISOFLOP); data/isoflop_lr_ends/seed0 and seed0_below (seed 0:
# a rate a factor 3 beyond the grid for each size whose chosen rate sat at an end, then once more where the new
# rate won); data/isoflop_seeds/seedK (seed K at 1e10, the grid of ISOFLOP), seedK_large (seed K at 3e10 and 1e11:
# each size at the rate seed 0 chose) and seedK_lower (the same sizes at the next rate below it). Every run is
# seeded on its own, so runs of one seed from different folders are those one sweep over their union would make.
# Hoffmann et al. 2022, approach 2 (iso-FLOP profiles), their Table 2: N_opt ~ C^a and D_opt ~ C^b with all
# parameters counted, with the ranges they report
HOFFMANN_APPROACH2 = {"a": 0.49, "a_range": (0.462, 0.534), "b": 0.51, "b_range": (0.483, 0.529)}

SEED_RECORDS = ["isoflop", "isoflop_lr_ends/seed0", "isoflop_lr_ends/seed0_below",
                "isoflop_seeds/seed1", "isoflop_seeds/seed1_large", "isoflop_seeds/seed1_lower",
                "isoflop_seeds/seed2", "isoflop_seeds/seed2_large", "isoflop_seeds/seed2_lower",
                "isoflop_seeds/seed1_higher", "isoflop_seeds/seed2_higher"]


def load_seed_records(folders=None):
    """(runs, commands): the iso-FLOP runs of every folder of `folders` (default SEED_RECORDS, relative to
    data/) in one table with a `seed` column (from each record's meta.json), `chosen` recomputed over
    the union of the rates each (seed, budget, size) was run at (lowest validation loss), `at_end` (the
    chosen rate is the lowest or the highest tried for that size), `at_top` (the highest), and the command
    that wrote each folder.
    Raises if a (seed, budget, size, rate) appears twice."""
    from .core import data_path

    tables, commands = [], []
    for folder in folders or SEED_RECORDS:
        runs, _, meta = load_records(data_path(folder))
        tables.append(runs.drop(columns="chosen").assign(seed=int(meta["config"]["seed"])))
        commands.append(meta["command"])
    runs = pd.concat(tables, ignore_index=True)
    key = ["seed", "budget", "name", "lr"]
    if runs.duplicated(key).any():
        raise ValueError(f"load_seed_records: repeated runs {runs[runs.duplicated(key)][key].values.tolist()}")
    size = runs.groupby(["seed", "budget", "name"])
    runs["chosen"] = runs.val_loss == size.val_loss.transform("min")
    runs["at_top"] = runs.chosen & (size.lr.transform("size") > 1) & (runs.lr == size.lr.transform("max"))
    runs["at_end"] = runs.at_top | (runs.chosen & (size.lr.transform("size") > 1) & (runs.lr == size.lr.transform("min")))
    return runs.sort_values(key, ignore_index=True), commands


def seed_allocations(runs, rates_from=None, n_col="non_embedding", loss_col="test_loss"):
    """One row per seed of `load_seed_records`'s runs: the valley N_opt of each budget, whether every valley
    is interior, and a of N_opt ~ C^a through that seed's valleys; then `utils.evaluation.t_interval` of a
    over the seeds (what a rerun with another seed moves). rates_from=None: each seed the rate it chose on its
    own validation windows; a seed number: every seed at the (budget, size, rate) that seed chose."""
    from .evaluation import t_interval

    key = ["budget", "name", "lr"]
    if rates_from is None:
        picked = runs[runs.chosen]
    else:
        rates = runs[(runs.seed == rates_from) & runs.chosen][key]
        picked = runs.merge(rates, on=key)
        missing = len(rates) * runs.seed.nunique() - len(picked)
        if missing:
            raise ValueError(f"seed_allocations: {missing} runs at seed {rates_from}'s rates are missing")
    rows = {}
    for seed, g in picked.groupby("seed"):
        table = valleys(g, n_col, loss_col)
        rows[seed] = {**{f"N_opt {c:.0e}": n for c, n in zip(table.budget, table.n_opt)},
                      "interior": bool(table.interior.all()), "a": fit_allocation(table.budget, table.n_opt)[0]}
    out = pd.DataFrame(rows).T.rename_axis("seed")
    out = out.astype({c: float for c in out.columns if c != "interior"})
    return out, t_interval(out.a)


def local_slopes(table):
    """The slope of log N_opt against log C between consecutive valleys of `valleys` (one fewer than budgets)."""
    t = table.sort_values("budget")
    return np.diff(np.log(t.n_opt.to_numpy(float))) / np.diff(np.log(t.budget.to_numpy(float)))


def repetition_table(chosen, curves, last=3):
    """Epochs and repetition of each chosen iso-FLOP run, with its training loss against its test loss:
    `epochs` (draws x window / training text), `repeated` (expected share of draws that repeat an earlier
    window, 1 - (1 - e^-e) / e for draws with replacement), `train` (mean training-batch loss over the run's
    last `last` evaluations in `curves`, one batch each), `test` and train - test. Sorted by epochs."""
    tail = curves.sort_values("step").groupby(["budget", "name", "lr"]).train_loss.apply(lambda s: s.iloc[-last:].mean())
    out = chosen.set_index(["budget", "name", "lr"])[["epochs", "test_loss"]].join(tail.rename("train"))
    out["repeated"] = 1 - (1 - np.exp(-out.epochs)) / out.epochs
    out["train - test"] = out.train - out.test_loss
    return out.rename(columns={"test_loss": "test"})[["epochs", "repeated", "train", "test", "train - test"]] \
        .reset_index(level="lr", drop=True).sort_values("epochs")


def plot_isoflop_runs(chosen, fits, *, n_col="non_embedding", loss_col="test_loss", save=None):
    """Left: held-out loss against model size at each budget (the chosen rate per size), each
    budget's parabola and its minimum. Right: the optimal size and tokens against the budget with
    the power laws of `fits` (from `bootstrap_allocation`)."""
    import matplotlib.pyplot as plt

    from .plotting import save_figure

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    table = fits["table"]
    for k, (budget, g) in enumerate(chosen.groupby("budget")):
        g = g.sort_values(n_col)
        v = fit_valley(g[n_col], g[loss_col])
        x = np.linspace(np.log10(g[n_col].min()) - 0.1, np.log10(g[n_col].max()) + 0.1, 100)
        ax.plot(g[n_col], g[loss_col], "o", color=f"C{k}", label=f"C = {budget:.0e} FLOP")
        ax.plot(10 ** x, v["a"] * x ** 2 + v["b"] * x + v["c"], "-", color=f"C{k}", lw=1)
        ax.plot(v["n_opt"], v["loss_opt"], "*", color=f"C{k}", ms=13, mec="k")
    ax.set(xscale="log", xlabel=f"model size N ({'non-embedding' if n_col == 'non_embedding' else 'all'} parameters)",
           ylabel="test loss (nats per character)", title="Iso-FLOP profiles: a valley per budget")
    ax.legend(fontsize=8, title="star: parabola minimum", title_fontsize=8)
    c = np.logspace(np.log10(table.budget.min()) - 0.1, np.log10(table.budget.max()) + 0.1, 20)
    # Hoffmann et al. 2022, approach 2 (Table 2): a = 0.49, b = 0.51, drawn through the same centre
    ref_a, ref_b = HOFFMANN_APPROACH2["a"], HOFFMANN_APPROACH2["b"]
    for col, exp, lo, hi, color, label, ref in [("n_opt", "a", "low", "high", "C0", "N_opt (parameters)", ref_a),
                                                ("d_opt", "b", "b_low", "b_high", "C3", "D_opt (characters)", ref_b)]:
        k = 10 ** np.mean(np.log10(table[col]) - fits[exp] * np.log10(table.budget))
        ax2.loglog(table.budget, table[col], "o", color=color)
        ax2.loglog(c, k * c ** fits[exp], "-", color=color,
                   label=f"{label} ~ C^{fits[exp]:.2f} [{fits[lo]:.2f}, {fits[hi]:.2f}]")
        k_ref = 10 ** np.mean(np.log10(table[col]) - ref * np.log10(table.budget))
        ax2.loglog(c, k_ref * c ** ref, ":", color=color, lw=1.5,
                   label=f"Hoffmann et al.'s slope C^{ref} (through the same points)")
    ax2.set(xlabel="training budget C (counted FLOP)", ylabel="optimal N (parameters) or D (characters)",
            title="Optimal allocation (95% parametric bootstrap)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    if save:
        save_figure(fig, save)
    return fig


def single_rate_allocations(runs, n_col="non_embedding", loss_col="test_loss", **kw):
    """The allocation exponent a of `bootstrap_allocation` fitted with one learning rate shared by every
    size (all runs of each rate in turn), instead of the rate chosen per size on validation. One row per
    rate: a with its 95% interval, and the three valley minima N_opt."""
    if "lr" not in runs.columns:
        raise ValueError("single_rate_allocations: runs have no column 'lr'")
    rows = {}
    for lr, g in runs.groupby("lr"):
        f = bootstrap_allocation(g, n_col=n_col, loss_col=loss_col, **kw)
        rows[f"lr {lr:g} for every size"] = {"a": f["a"], "95% low": f["low"], "95% high": f["high"],
                                             "N_opt": ", ".join(f"{n:,.0f}" for n in f["table"].n_opt)}
    out = pd.DataFrame(rows).T
    return out.astype({"a": float, "95% low": float, "95% high": float})
