"""Scaling laws of language models: the published fits as functions, and a tiny experiment.

Units: N is a number of parameters, D a number of training tokens, C a number of FLOP
(floating-point operations; Kaplan et al. quote PF-days, converted with `PF_DAY`).

Sources (constants as published):
- Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361.
- Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv:2203.15556
  (Chinchilla; parametric fit of approach 3).
- Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt", arXiv:2404.10102.
"""
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "PF_DAY", "KAPLAN", "ChinchillaFit", "HOFFMANN_2022", "BESIROGLU_2024",
    "kaplan_loss_n", "kaplan_loss_d", "kaplan_loss_c", "kaplan_optimal",
    "chinchilla_loss", "training_flops", "compute_optimal",
    "non_embedding_approx", "count_parameters", "gpt2_config",
    "fit_offset_power_law", "fit_power_law", "fit_loss_curve", "doubling_time",
    "load_model_sizes", "char_vocab", "char_tokenizer", "CharWindows", "loss_on", "run_sweep", "SWEEPS",
    "compute_curves", "compute_frontier",
    "plot_timeline", "plot_kaplan_laws", "plot_isoflop",
]

PF_DAY = 1e15 * 86400  # one petaFLOP/s sustained for a day = 8.64e19 FLOP

# Kaplan et al. 2020: L in nats per token, N = non-embedding parameters, D = tokens,
# C_min in PF-days. Single-variable fits (their eqs. 1.1-1.3); exponents 0.076, 0.095, 0.050.
KAPLAN = {
    "alpha_N": 0.076, "N_c": 8.8e13,
    "alpha_D": 0.095, "D_c": 5.4e13,
    "alpha_C": 0.050, "C_c": 3.1e8,  # PF-days
    "N_exponent": 0.73,  # compute-efficient allocation: N_opt grows as C^0.73 ...
    "D_exponent": 0.27,  # ... and the data as C^0.27
}


def _positive(name, value):
    """An array of the values, checked to be finite and > 0 (the laws take logs and powers)."""
    arr = np.asarray(value, dtype=float)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return arr if arr.ndim else float(arr)


def kaplan_loss_n(n):
    """Kaplan's L(N) = (N_c / N)^alpha_N: loss of a model of N non-embedding parameters
    trained to convergence on enough data."""
    n = _positive("n (non-embedding parameters)", n)
    return (KAPLAN["N_c"] / n) ** KAPLAN["alpha_N"]


def kaplan_loss_d(d):
    """Kaplan's L(D) = (D_c / D)^alpha_D: loss of a large model trained on D tokens (early stopped)."""
    d = _positive("d (tokens)", d)
    return (KAPLAN["D_c"] / d) ** KAPLAN["alpha_D"]


def kaplan_loss_c(c):
    """Kaplan's L(C_min) = (C_c / C_min)^alpha_C, with C given in FLOP (converted to PF-days)."""
    c = _positive("c (FLOP)", c)
    return (KAPLAN["C_c"] / (c / PF_DAY)) ** KAPLAN["alpha_C"]


def training_flops(n, d):
    """C ~ 6 N D: forward (2 N D) plus backward (4 N D) FLOP to train N parameters on D tokens."""
    return 6.0 * _positive("n (parameters)", n) * _positive("d (tokens)", d)


@dataclass(frozen=True)
class ChinchillaFit:
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, approach 3)."""
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    name: str = ""

    @property
    def a(self):
        """Exponent of N_opt in C: beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self):
        """Exponent of D_opt in C: alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self):
        return (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))


# Unrounded constants: rounding alpha and beta to two digits moves the optimum a lot.
HOFFMANN_2022 = ChinchillaFit(E=1.6934, A=406.40, B=410.72, alpha=0.33917, beta=0.28491,
                              name="Hoffmann et al. 2022")
BESIROGLU_2024 = ChinchillaFit(E=1.82, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658,
                               name="Besiroglu et al. 2024")


def _fit(fit):
    if not isinstance(fit, ChinchillaFit):
        raise TypeError(f"fit must be a ChinchillaFit (e.g. HOFFMANN_2022), got {type(fit).__name__}")
    return fit


def chinchilla_loss(n, d, fit=HOFFMANN_2022):
    """The parametric loss L(N, D) = E + A / N^alpha + B / D^beta of `fit`."""
    fit = _fit(fit)
    n, d = _positive("n (parameters)", n), _positive("d (tokens)", d)
    return fit.E + fit.A / n ** fit.alpha + fit.B / d ** fit.beta


def compute_optimal(c, fit=HOFFMANN_2022):
    """(N_opt, D_opt) minimising `fit`'s loss under C = 6 N D:
    N_opt = G (C/6)^a, D_opt = (C/6)^b / G (closed form, Hoffmann et al. eq. 4)."""
    fit = _fit(fit)
    c = _positive("c (FLOP)", c)
    return fit.G * (c / 6) ** fit.a, (c / 6) ** fit.b / fit.G


def kaplan_optimal(c, anchor=(175e9, 300e9)):
    """(N, D) of Kaplan's compute-efficient allocation N ~ C^0.73, D = C / (6 N).

    Kaplan et al. give the exponent; the constant in front is taken from `anchor`, a
    (parameters, tokens) run assumed to lie on the allocation (default: GPT-3, which followed it).
    """
    c = _positive("c (FLOP)", c)
    n0, d0 = (_positive("anchor", v) for v in anchor)
    c0 = 6 * n0 * d0
    n = n0 * (c / c0) ** KAPLAN["N_exponent"]
    return n, c / (6 * n)


# ---------------------------------------------------------------- counting parameters

def non_embedding_approx(n_layer, d_model):
    """Kaplan's N ~ 12 n_layer d_model^2 (attention 4 d^2 + feed-forward 8 d^2 per layer,
    biases and layer norms left out, d_ff = 4 d_model)."""
    for name, v in (("n_layer", n_layer), ("d_model", d_model)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return 12 * n_layer * d_model ** 2


def count_parameters(model):
    """Exact parameter counts of a transformers model, tied weights counted once.

    Embedding = the token embedding (GPT-2's wte, tied to the LM head) plus the learned position
    embedding (wpe) when the model has one; everything else (attention, MLP, layer norms and
    their biases) is non-embedding, as in Kaplan et al. Returns a dict total / embedding /
    non_embedding.
    """
    import torch

    if not isinstance(model, torch.nn.Module) or not hasattr(model, "get_input_embeddings"):
        raise TypeError(f"count_parameters needs a transformers model, got {type(model).__name__}")
    unique = {id(p): p for p in model.parameters()}
    embedding_modules = [model.get_input_embeddings()]
    for module_name, module in model.named_modules():
        if module_name.split(".")[-1] in ("wpe", "position_embeddings", "embed_positions"):
            embedding_modules.append(module)
    embedding_ids = {id(p) for m in embedding_modules if m is not None for p in m.parameters()}
    total = sum(p.numel() for p in unique.values())
    embedding = sum(p.numel() for i, p in unique.items() if i in embedding_ids)
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def gpt2_config(n_layer, d_model, n_head, vocab_size=50257, n_positions=1024, **kwargs):
    """A transformers GPT2Config of the given shape (d_ff = 4 d_model, dropout off)."""
    from transformers import GPT2Config

    if d_model % n_head:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_head ({n_head})")
    defaults = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    defaults.update(kwargs)
    return GPT2Config(n_layer=n_layer, n_embd=d_model, n_head=n_head, vocab_size=vocab_size,
                      n_positions=n_positions, **defaults)


# ---------------------------------------------------------------- fitting

def fit_offset_power_law(x, y, p0=None):
    """Fit y = E + (x_c / x)^alpha with scipy; returns dict E, x_c, alpha, their standard errors
    (`E_err`, `x_c_err`, `alpha_err`, from the covariance of the least-squares fit) and `predict`.

    Fitted in log space of the parameters so that all stay positive; needs at least 4 points.
    """
    from scipy.optimize import curve_fit

    x, y = _positive("x", x), _positive("y", y)
    x, y = np.atleast_1d(x), np.atleast_1d(y)
    if x.shape != y.shape or x.size < 4:
        raise ValueError(f"need x and y of one shape with at least 4 points, got {x.shape} and {y.shape}")
    lx = np.log(x)

    def model(lx, log_e, log_xc, alpha):
        return np.exp(log_e) + np.exp(alpha * (log_xc - lx))

    if p0 is None:
        p0 = (math.log(0.5 * y.min()), float(lx.max()) + 1.0, 0.3)
    params, cov = curve_fit(model, lx, y, p0=p0, maxfev=20000)
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    log_e, log_xc, alpha = params
    e, xc = math.exp(log_e), math.exp(log_xc)

    def predict(xnew):
        return model(np.log(_positive("x", xnew)), *params)

    return {"E": e, "x_c": xc, "alpha": float(alpha), "E_err": e * err[0], "x_c_err": xc * err[1],
            "alpha_err": float(err[2]), "predict": predict}


def fit_power_law(x, y):
    """Fit the pure power law y = (x_c / x)^alpha, a straight line on log-log axes (Kaplan's form),
    by least squares on the logs; returns dict alpha, alpha_err (standard error), x_c, predict."""
    from scipy.stats import linregress

    x, y = np.atleast_1d(_positive("x", x)), np.atleast_1d(_positive("y", y))
    if x.shape != y.shape or x.size < 3:
        raise ValueError(f"need x and y of one shape with at least 3 points, got {x.shape} and {y.shape}")
    res = linregress(np.log(x), np.log(y))
    alpha = -res.slope
    x_c = math.exp(res.intercept / alpha) if alpha else float("inf")

    def predict(xnew):
        return np.exp(res.intercept + res.slope * np.log(_positive("x", xnew)))

    return {"alpha": float(alpha), "alpha_err": float(res.stderr), "x_c": x_c, "predict": predict}


def fit_loss_curve(steps, losses, upto):
    """Fit L(t) = E + (t_c / t)^alpha to a training curve's points with step <= `upto`
    (the "extrapolate the early curve" idea); returns the fit of `fit_offset_power_law`."""
    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    keep = steps <= upto
    if keep.sum() < 4:
        raise ValueError(f"fit_loss_curve: only {int(keep.sum())} points at or before step {upto}")
    return fit_offset_power_law(steps[keep], losses[keep])


def doubling_time(dates, values):
    """Least-squares fit of log2(values) against the date in years; returns (months per
    doubling, fitted function date -> value). `dates`: anything pandas.to_datetime takes."""
    dates = pd.to_datetime(pd.Series(dates))
    values = _positive("values", np.asarray(values, dtype=float))
    if len(dates) != np.size(values) or len(dates) < 2:
        raise ValueError("doubling_time needs at least two dates and as many values")
    years = (dates.dt.year + (dates.dt.dayofyear - 1) / 365.25).to_numpy(float)
    slope, intercept = np.polyfit(years, np.log2(values), 1)
    if slope <= 0:
        raise ValueError("doubling_time: the values do not grow over time")

    def line(new_dates):
        d = pd.to_datetime(pd.Series(new_dates))
        y = (d.dt.year + (d.dt.dayofyear - 1) / 365.25).to_numpy(float)
        return 2.0 ** (slope * y + intercept)

    return 12.0 / slope, line


# ---------------------------------------------------------------- data

def load_model_sizes(path=None):
    """The course's table of model sizes (data/model_sizes.csv), dates parsed."""
    from .core import data_path

    df = pd.read_csv(path or data_path("model_sizes.csv"), parse_dates=["date"])
    missing = df["source"].isna()
    if missing.any():
        raise ValueError(f"model_sizes.csv: rows without a source: {list(df.name[missing])}")
    return df


def char_vocab(text):
    """Character-level vocabulary: a dict character -> id, ids in sorted character order."""
    if not text:
        raise ValueError("char_vocab: empty text")
    return {ch: i for i, ch in enumerate(sorted(set(text)))}


def char_tokenizer(vocab):
    """A transformers tokenizer for the character vocabulary `vocab` (built with `tokenizers`: one
    token per character, newlines included, decoded by joining), so that a character model runs
    through the usual `pipeline("text-generation")`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if not vocab:
        raise ValueError("char_tokenizer: empty vocabulary")
    tok = Tokenizer(models.WordLevel(vocab=dict(vocab), unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")  # (?m): . matches \n
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok)


class CharWindows:
    """Non-overlapping windows of `block_size` character ids; each item is a dict with
    input_ids and labels (the same tensor: GPT2LMHeadModel shifts the labels itself)."""

    def __init__(self, text, vocab, block_size):
        import torch

        unknown = set(text) - set(vocab)
        if unknown:
            raise ValueError(f"CharWindows: characters not in the vocabulary: {sorted(unknown)[:10]}")
        if block_size < 2 or len(text) < block_size:
            raise ValueError(f"CharWindows: block_size {block_size} does not fit a text of {len(text)} characters")
        ids = torch.tensor([vocab[ch] for ch in text], dtype=torch.long)
        n = len(ids) // block_size
        self.windows = ids[: n * block_size].view(n, block_size)

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, i):
        w = self.windows[i]
        return {"input_ids": w, "labels": w}


def loss_on(model, windows, batch_size=64):
    """Mean next-character loss (nats) of `model` over all windows of a CharWindows."""
    import torch

    device = next(model.parameters()).device
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            ids = windows.windows[start:start + batch_size].to(device)
            out = model(input_ids=ids, labels=ids)
            tokens = ids.shape[0] * (ids.shape[1] - 1)
            total += out.loss.item() * tokens
            count += tokens
    model.train(was_training)
    return total / count


# ---------------------------------------------------------------- the experiment

# (n_layer, d_model, n_head) of each size. "cpu": the notebook's default (about a minute of
# training on a quiet 2-core CPU; 6.6e3 to 4.5e5 non-embedding parameters, 1.8 decades; at least
# two layers, since one-layer models fall off the trend); "gpu": the bigger sweep of
# scripts/scaling_sweep.py.
SWEEPS = {
    "cpu": {"sizes": [(2, 16, 2), (2, 24, 2), (2, 32, 4), (2, 48, 4), (3, 64, 4), (4, 96, 4)],
            "steps": 300, "batch_size": 16, "block_size": 64, "lr": 3e-3},
    "gpu": {"sizes": [(2, 64, 4), (2, 128, 4), (4, 192, 6), (4, 256, 8), (6, 384, 8),
                      (8, 512, 8), (12, 768, 12)],
            "steps": 3000, "batch_size": 64, "block_size": 256, "lr": 1e-3},
}


def run_sweep(text, sizes, *, steps, batch_size, block_size, lr, eval_every=None, val_fraction=0.1,
              eval_windows=128, seed=0, threads=1, progress=False):
    """Train one GPT-2-shaped character model per (n_layer, d_model, n_head) in `sizes` for the
    same number of steps with the course's `train` loop; returns (results, histories, models).

    The last `val_fraction` of `text` is held out: `eval_windows` windows of it are scored every
    `eval_every` steps (history column eval_loss), all of it once at the end (results val_loss).
    results: one row per size with its parameter counts, the held-out loss, tokens seen and
    training FLOP (6 N D, N non-embedding). histories: dict name -> the DataFrame `train` returned;
    models: dict name -> the trained GPT2LMHeadModel.
    `threads`: torch CPU threads while training (models this small run faster on one thread
    than on two; the previous setting is restored afterwards).
    """
    import torch
    from transformers import GPT2LMHeadModel

    from .training import train

    if not sizes:
        raise ValueError("run_sweep: no sizes given")
    vocab = char_vocab(text)
    split = int(len(text) * (1 - val_fraction))
    train_set = CharWindows(text[:split], vocab, block_size)
    val_set = CharWindows(text[split:], vocab, block_size)
    val_subset = CharWindows.__new__(CharWindows)
    val_subset.windows = val_set.windows[:eval_windows]
    rows, histories, models = [], {}, {}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads or old_threads)
    try:
        for n_layer, d_model, n_head in sizes:
            torch.manual_seed(seed)
            config = gpt2_config(n_layer, d_model, n_head, vocab_size=len(vocab),
                                 n_positions=block_size, bos_token_id=None, eos_token_id=None)
            model = GPT2LMHeadModel(config)
            counts = count_parameters(model)
            name = f"L{n_layer}-d{d_model}"
            history = train(model, train_set, batch_size=batch_size, max_steps=steps, lr=lr,
                            eval_fn=lambda m: {"eval_loss": loss_on(m, val_subset)},
                            eval_every=eval_every, seed=seed, progress=progress)
            tokens = steps * batch_size * block_size
            rows.append({"name": name, "n_layer": n_layer, "d_model": d_model, "n_head": n_head,
                         "non_embedding": counts["non_embedding"], "total": counts["total"],
                         "approx_12Ld2": non_embedding_approx(n_layer, d_model),
                         "tokens": tokens, "flops": training_flops(counts["non_embedding"], tokens),
                         "train_loss": history["loss"].tail(20).mean(),
                         "val_loss": loss_on(model, val_set),
                         "seconds": history["seconds"].iloc[-1]})
            histories[name] = history
            models[name] = model
    finally:
        torch.set_num_threads(old_threads)
    return pd.DataFrame(rows), histories, models


def compute_curves(results, histories, tokens_per_step):
    """Every evaluation of every run as one table: name, non_embedding, step, flops (6 N D so
    far), eval_loss."""
    frames = []
    for _, row in results.iterrows():
        h = histories[row["name"]].dropna(subset=["eval_loss"])
        frames.append(pd.DataFrame({"name": row["name"], "non_embedding": row["non_embedding"],
                                    "step": h["step"].to_numpy(),
                                    "flops": 6.0 * row["non_embedding"] * h["step"].to_numpy() * tokens_per_step,
                                    "eval_loss": h["eval_loss"].to_numpy()}))
    return pd.concat(frames, ignore_index=True)


def compute_frontier(curves, n_bins=12):
    """The compute-efficient frontier: in each of `n_bins` log-spaced compute bins, the lowest
    loss any run reached with at most that much compute. Returns flops, eval_loss, name."""
    if curves.empty:
        raise ValueError("compute_frontier: no evaluation points")
    edges = np.logspace(np.log10(curves.flops.min()), np.log10(curves.flops.max()), n_bins)
    rows = []
    for c in edges:
        seen = curves[curves.flops <= c * (1 + 1e-9)]
        best = seen.loc[seen.eval_loss.idxmin()]
        rows.append({"flops": c, "eval_loss": best.eval_loss, "name": best["name"]})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- figures (plain matplotlib)

def plot_timeline(df, *, fit_line=None, ax=None, save=None):
    """Parameters against release date on a log scale; dense models as dots, mixture-of-experts
    models as open diamonds (total parameters) joined to a small filled diamond (active
    parameters per token, where the table has them). Labels placed by `label_points`."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from .plotting import label_points, save_figure

    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 7))
    fig = ax.figure
    dense, moe = df[~df.moe], df[df.moe]
    ax.scatter(dense.date, dense.parameters, color="C0", s=30, zorder=3, label="dense")
    ax.scatter(moe.date, moe.parameters, facecolor="white", edgecolor="C3", marker="D", s=40,
               zorder=3, label="mixture of experts: total")
    active = moe.dropna(subset=["active_parameters"])
    if len(active):
        ax.scatter(active.date, active.active_parameters, color="C3", marker="D", s=18, zorder=3,
                   label="mixture of experts: active per token")
        for _, r in active.iterrows():
            ax.plot([r.date, r.date], [r.active_parameters, r.parameters], color="C3", lw=0.8, ls=":")
    if fit_line is not None:
        span = pd.date_range(df.date.min(), df.date.max(), periods=50)
        ax.plot(span, fit_line(span), color="0.4", ls="--", lw=1, label="fit to the dense models")
    ax.set_yscale("log")
    ax.set(xlabel="release date", ylabel="parameters")
    ax.xaxis.set_major_locator(mdates.YearLocator())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    ax.set_xlim(df.date.min() - pd.Timedelta(days=120), df.date.max() + pd.Timedelta(days=500))
    ax.set_ylim(df.parameters.min() / 3, df.parameters.max() * 8)  # room for the labels
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    label_points(ax, mdates.date2num(df.date), df.parameters, df.name, fontsize=9)
    if save:
        save_figure(fig, save)
    return ax


def _range_fan(ax, x, y_mid, lo=0.05, hi=0.095):
    """Shade the lines of slope -lo ... -hi through the middle point of (x, y_mid)."""
    x = np.asarray(x, dtype=float)
    i = len(x) // 2
    x0, y0 = x[i], y_mid[i]
    ax.fill_between(x, y0 * (x / x0) ** -lo, y0 * (x / x0) ** -hi, color="0.85", zorder=0,
                    label=f"slopes -{lo} to -{hi}")


def plot_kaplan_laws(save=None):
    """Kaplan's three power laws, one log-log panel each, with the 0.05-0.095 range of slopes."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    from .plotting import plot_power_law, save_figure

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [
        (np.logspace(5, 11, 50), kaplan_loss_n, "alpha_N", "non-embedding parameters N", "L(N)"),
        (np.logspace(8, 13, 50), kaplan_loss_d, "alpha_D", "tokens D", "L(D)"),
        (np.logspace(17, 25, 50), kaplan_loss_c, "alpha_C", "compute C (FLOP)", "L(C_min)"),
    ]
    for ax, (x, law, key, xlabel, name) in zip(axes, panels):
        y = law(x)
        label = f"{name}, slope -{KAPLAN[key]}"
        plot_power_law(x, {label: y}, xlabel=xlabel, ylabel="test loss (nats/token)", ax=ax,
                       styles={label: {"color": "C0", "lw": 2}})
        _range_fan(ax, x, y)
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.grid(True, which="minor", alpha=0.1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    if save:
        save_figure(fig, save)
    return fig


def plot_isoflop(budgets, fit=HOFFMANN_2022, *, ax=None, save=None):
    """Loss of `fit` against N at fixed compute (D = C / 6N), one curve per budget in FLOP,
    the compute-optimal point of each marked."""
    import matplotlib.pyplot as plt

    from .plotting import save_figure

    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    fig = ax.figure
    for k, c in enumerate(budgets):
        n_opt, d_opt = compute_optimal(c, fit)
        n = np.logspace(np.log10(n_opt) - 1.5, np.log10(n_opt) + 1.5, 200)
        ax.semilogx(n, chinchilla_loss(n, c / (6 * n), fit), color=f"C{k}", label=f"C = {c:.0e} FLOP")
        ax.plot(n_opt, chinchilla_loss(n_opt, d_opt, fit), "o", color=f"C{k}", ms=6)
    ax.set(xlabel="parameters N", ylabel="predicted loss L(N, C/6N)",
           title=f"iso-FLOP curves of the {fit.name} fit (dots: minimum)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if save:
        save_figure(fig, save)
    return ax
