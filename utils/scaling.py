"""Scaling laws of language models: the published fits as functions, and a tiny experiment.

Units: N is a number of parameters, D a number of training tokens, C a number of FLOP
(floating-point operations; Kaplan et al. quote PF-days, converted with `PF_DAY`).

Sources (constants as published):
- Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361.
- Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv:2203.15556
  (Chinchilla; parametric fit of approach 3).
- Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt", arXiv:2404.10102.
- Rajbhandari et al. 2019, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models",
  arXiv:1910.02054 (16 bytes per parameter of mixed-precision Adam; the three ZeRO stages).
- Sardana et al. 2023, "Beyond Chinchilla-Optimal: Accounting for Inference in Language Model
  Scaling Laws", arXiv:2401.00448.
- Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", arXiv:2305.16264.
"""
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "PF_DAY", "KAPLAN", "ChinchillaFit", "HOFFMANN_2022", "BESIROGLU_2024",
    "kaplan_loss_n", "kaplan_loss_d", "kaplan_loss_c", "kaplan_optimal",
    "flops_per_token", "measure_training_flops", "embedding_parameters",
    "ACCELERATORS", "training_memory", "devices_to_hold", "training_budget", "inference_flops",
    "inference_aware_optimal", "moe_costs", "effective_data", "tokens_to_reach", "ngram_loss", "ngram_baseline",
    "chinchilla_loss", "training_flops", "compute_optimal",
    "non_embedding_approx", "count_parameters", "gpt2_config",
    "fit_offset_power_law", "fit_power_law", "fit_loss_curve", "doubling_time", "growth_per_year", "allocation_table",
    "load_model_sizes", "char_vocab", "char_tokenizer", "CharWindows", "loss_on", "run_sweep", "SWEEPS",
    "compute_curves", "compute_frontier", "load_sweep_records", "load_lr_grid", "sweep_exponents", "seed_table", "repeated_sampling", "shape_table",
    "embedding_share",
    "plot_timeline", "plot_kaplan_laws", "plot_isoflop", "plot_allocation", "plot_loss_vs_size",
    "plot_compute_frontier", "plot_loss_forecast", "plot_sample_efficiency",
]

PF_DAY = 1e15 * 86400  # one petaFLOP/s sustained for a day = 8.64e19 FLOP

# Kaplan et al. 2020: L in nats per token, N = non-embedding parameters, D = tokens,
# C_min in PF-days. Single-variable fits (their eqs. 1.1-1.3); exponents 0.076, 0.095, 0.050.
KAPLAN = {
    "alpha_N": 0.076, "N_c": 8.8e13,
    "alpha_D": 0.095, "D_c": 5.4e13,
    "alpha_C": 0.050, "C_c": 3.1e8,  # PF-days
    "N_exponent": 0.73,  # compute-efficient allocation: N_opt = N_e C_min^0.73 ...
    "N_e": 1.3e9,        # ... non-embedding parameters at C_min = 1 PF-day (their Table 6, Figure 14)
    "D_exponent": 0.27,  # ... and the data D_opt = D_e C_min^0.27
    "D_e": 2e10,         # tokens (Table 6)
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


def kaplan_optimal(c, anchor=None, *, critical_batch=True):
    """(N, D) of Kaplan et al.'s compute-efficient allocation for a training budget of `c` FLOP.

    By default Kaplan's own constants: N_opt = 1.3e9 * C_min^0.73 non-embedding parameters, C_min
    in PF-days (their Table 6 and Figure 14), and D = C / (6 N). C_min is the compute a run would
    need at a batch far below the critical batch size; training at the critical batch size
    spends twice that (Kaplan et al., section 5.1), so C_min = c / 2 unless `critical_batch` is
    False (then `c` is taken to be C_min itself). With C_min = c / 2 this gives 4.68e9 parameters
    at 1e21 FLOP, the figure Hoffmann et al. 2022 (appendix D.4) took from Kaplan's law.

    `anchor`: a (parameters, tokens) run assumed to lie on the line instead; only the exponent
    0.73 is then Kaplan's.
    """
    c = _positive("c (FLOP)", c)
    if anchor is not None:
        n0, d0 = (_positive("anchor", v) for v in anchor)
        n = n0 * (c / (6 * n0 * d0)) ** KAPLAN["N_exponent"]
    else:
        c_min = c / 2 if critical_batch else c
        n = KAPLAN["N_e"] * (c_min / PF_DAY) ** KAPLAN["N_exponent"]
    return n, c / (6 * n)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def flops_per_token(n_layer, d_model, n_ctx, vocab_size, *, d_ff=None, causal_half=False):
    """Forward FLOP per token of a GPT-2-shaped decoder (2 FLOP per multiply-add), by part.

    - "weights": 2 x the weight matrices of the blocks, 2 n_layer (4 d^2 + 2 d d_ff); this is
      Kaplan's 2N without the biases and layer norms, which cost no matrix products;
    - "attention": the score matrix QK^T and its product with V, 4 n_layer n_ctx d_model for a
      full n_ctx x n_ctx matrix, as the kernels compute it; with `causal_half` only the lower
      triangle is counted, 2 n_layer n_ctx d_model, Kaplan et al.'s Table 1 entry;
    - "head": the output projection onto the vocabulary, 2 d_model n_vocab (outside N);
    - "forward" their sum and "training" three times it (the backward pass costs two forwards).

    C = 6 N D keeps only "weights": the others matter most for small, short-context models.
    """
    n_layer, d_model = _positive_int("n_layer", n_layer), _positive_int("d_model", d_model)
    n_ctx, vocab_size = _positive_int("n_ctx", n_ctx), _positive_int("vocab_size", vocab_size)
    d_ff = 4 * d_model if d_ff is None else _positive_int("d_ff", d_ff)
    weights = 2 * n_layer * (4 * d_model ** 2 + 2 * d_model * d_ff)
    attention = (2 if causal_half else 4) * n_layer * n_ctx * d_model
    head = 2 * d_model * vocab_size
    forward = weights + attention + head
    return {"weights": weights, "attention": attention, "head": head, "forward": forward,
            "training": 3 * forward}


def measure_training_flops(model, input_ids):
    """FLOP of one training step (forward with the loss, then backward) of a transformers causal
    LM on the batch `input_ids`, counted by `torch.utils.flop_counter.FlopCounterMode`.

    The count is taken with eager attention (the model's own setting is restored afterwards):
    the fused CPU attention kernel behind SDPA is not among the operations FlopCounterMode knows,
    so under SDPA the attention scores would go uncounted. No optimiser step is taken.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
        raise TypeError(f"measure_training_flops needs a transformers model, got {type(model).__name__}")
    if not torch.is_tensor(input_ids) or input_ids.ndim != 2:
        raise ValueError("measure_training_flops: input_ids must be a 2-d tensor (batch, length)")
    old = model.config._attn_implementation
    model.config._attn_implementation = "eager"
    try:
        with FlopCounterMode(display=False) as counter:
            out = model(input_ids=input_ids, labels=input_ids)
            out.loss.backward()
    finally:
        model.config._attn_implementation = old
        model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def embedding_parameters(d_model, vocab_size, n_ctx=0):
    """Parameters of a token embedding (vocab_size x d_model, tied to the output layer) plus a
    learned position embedding (n_ctx x d_model; 0 for rotary or relative positions)."""
    d_model, vocab_size = _positive_int("d_model", d_model), _positive_int("vocab_size", vocab_size)
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, (int, np.integer)) or n_ctx < 0:
        raise ValueError(f"n_ctx must be an integer >= 0, got {n_ctx!r}")
    return (vocab_size + int(n_ctx)) * d_model


# ---------------------------------------------------------------- the cost of scale

# Peak dense tensor throughput (FLOP/s, 16-bit inputs, no sparsity) and memory (bytes) from the
# vendors' data sheets: NVIDIA V100 SXM2 (125 TFLOPS fp16, 32 GB), A100 SXM 80GB (312 TFLOPS
# bf16), H100 SXM (989 TFLOPS bf16, 80 GB; the accelerator of the Llama 3 paper).
ACCELERATORS = {
    "V100": {"peak_flops": 125e12, "memory": 32e9},
    "A100": {"peak_flops": 312e12, "memory": 80e9},
    "H100": {"peak_flops": 989e12, "memory": 80e9},
}

# Bytes per parameter of mixed-precision Adam (Rajbhandari et al. 2019, section 3.1):
# fp16 weights 2, fp16 gradients 2, and the fp32 optimiser state K = 12 (master weights,
# momentum and variance, 4 each).
_ADAM_BYTES = {"weights": 2, "gradients": 2, "optimizer": 12}


def training_memory(n_params, *, zero_stage=0, n_devices=1):
    """Bytes per device of the model state of mixed-precision Adam training, before activations.

    ZeRO (Rajbhandari et al. 2019) partitions across `n_devices` data-parallel devices the
    optimiser state (stage 1), also the gradients (stage 2), also the weights (stage 3).
    Returns a dict: weights, gradients, optimizer and total bytes per device.
    """
    n_params = _positive("n_params", n_params)
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    n_devices = _positive_int("n_devices", n_devices)
    split = {"optimizer": zero_stage >= 1, "gradients": zero_stage >= 2, "weights": zero_stage >= 3}
    out = {k: n_params * b / (n_devices if split[k] else 1) for k, b in _ADAM_BYTES.items()}
    out["total"] = sum(out.values())
    return out


def devices_to_hold(n_params, device_memory=80e9, *, bytes_per_param=16):
    """The fewest devices of `device_memory` bytes that can hold the training state at all:
    the whole state spread evenly (ZeRO stage 3), activations and buffers left out."""
    n_params, device_memory = _positive("n_params", n_params), _positive("device_memory", device_memory)
    return int(math.ceil(n_params * _positive("bytes_per_param", bytes_per_param) / device_memory))


# Llama 3 405B pre-training layouts (Llama 3 paper, Table 4): GPUs, TP, CP, PP, DP, sequence length,
# sequences per data-parallel group, and the reported BF16 MFU. The model: 126 layers, width 16384.
LLAMA3_405B_LAYOUTS = [
    {"gpus": 8192, "tp": 8, "cp": 1, "pp": 16, "dp": 64, "seq_len": 8192, "batch_per_dp": 32, "mfu": 0.43},
    {"gpus": 16384, "tp": 8, "cp": 1, "pp": 16, "dp": 128, "seq_len": 8192, "batch_per_dp": 16, "mfu": 0.41},
    {"gpus": 16384, "tp": 8, "cp": 16, "pp": 16, "dp": 8, "seq_len": 131072, "batch_per_dp": 16, "mfu": 0.38},
]


def parallel_layout(n_params, *, n_layers, d_model, seq_len, batch_per_dp, tp=1, cp=1, pp=1, dp=1,
                    zero_stage=0, micro_batches=None, kv_dim=None, bytes_per_value=2):
    """Memory per GPU and bytes each GPU sends per optimiser step for a TP x CP x PP x DP layout.

    What each kind of parallelism divides and communicates (ring collectives: an all-reduce of S bytes
    over k GPUs sends 2 S (k-1)/k per GPU, an all-gather or reduce-scatter S (k-1)/k):
    - tensor (TP, Megatron-LM, Shoeybi et al. 2019): splits every weight matrix; each layer all-reduces
      its activations twice forward and twice backward (b s h values each, over the TP group);
    - context (CP): splits the sequence; each layer all-gathers keys and values forward and
      reduce-scatters their gradients backward (`kv_dim` values per token each, d_model unless the
      model shares keys and values across heads);
    - pipeline (PP): splits the layers into stages; each stage sends its boundary activations forward
      and their gradients back (each TP rank 1/tp of them, the scatter-gather of Narayanan et al.
      2021), and idles for a bubble of (pp-1)/(m+pp-1) of the step with m micro-batches
      (Narayanan et al. 2021, 1F1B schedule);
    - data (DP): splits the batch; all-reduces gradients over the dp x cp GPUs holding the same weights (ZeRO stages 0-2), or with ZeRO-3 / FSDP
      all-gathers the weights forward and backward and reduce-scatters the gradients: 1.5x the bytes
      (Rajbhandari et al. 2019, section 7).
    Communication is counted for the largest stage, ceil(n_layers / pp) layers. Memory is the Adam state of `training_memory` for the n_params / (tp pp) parameters of one GPU,
    ZeRO-sharded over the dp x cp GPUs that hold copies of them; activations are left out.
    Returns a dict of gpus, tokens_per_step, params_per_gpu, memory (bytes per GPU, `training_memory`'s
    dict), comm (bytes sent per GPU per step, one entry per kind) and bubble (a fraction of the step).
    """
    n_params = _positive("n_params", n_params)
    ints = {k: _positive_int(k, v) for k, v in dict(n_layers=n_layers, d_model=d_model, seq_len=seq_len,
                                                       batch_per_dp=batch_per_dp, tp=tp, cp=cp, pp=pp, dp=dp).items()}
    if ints["seq_len"] % ints["cp"]:
        raise ValueError(f"parallel_layout: seq_len ({seq_len}) must divide into cp ({cp}) chunks")
    m = ints["batch_per_dp"] if micro_batches is None else _positive_int("micro_batches", micro_batches)
    gpus = tp * cp * pp * dp
    per_gpu = n_params / (tp * pp)
    memory = training_memory(per_gpu, zero_stage=zero_stage, n_devices=dp * cp)
    values = ints["batch_per_dp"] * seq_len // cp * d_model * bytes_per_value  # one layer's activations, one GPU
    kv_values = values * (d_model if kv_dim is None else _positive_int("kv_dim", kv_dim)) / d_model
    layers = -(-n_layers // pp)  # the largest stage's layers (Llama 3: 126 layers in 16 stages)
    ring = lambda k: (k - 1) / k  # noqa: E731
    comm = {"tensor": 4 * layers * values * 2 * ring(tp),
            "context": 2 * 2 * layers * kv_values * (cp - 1),  # K and V, forward and backward
            "pipeline": 2 * values / tp if pp > 1 else 0.0,
            "data": (3 if zero_stage == 3 else 2) * per_gpu * bytes_per_value * ring(dp * cp)}
    return {"gpus": gpus, "tokens_per_step": seq_len * ints["batch_per_dp"] * dp, "params_per_gpu": per_gpu,
            "memory": memory, "comm": comm, "bubble": (pp - 1) / (m + pp - 1)}


def layout_table(layouts):
    """One row per named `parallel_layout` result: GPUs, tokens per step, parameters and GB of Adam state
    per GPU, GB each GPU sends per step for each kind of parallelism (TP, CP, PP, DP), the pipeline bubble."""
    short = {"tensor": "TP", "context": "CP", "pipeline": "PP", "data": "DP"}
    rows = {}
    for name, out in layouts.items():
        row = {"GPUs": out["gpus"], "tokens/step": f"{out['tokens_per_step'] / 1e6:.1f}M",
               "params/GPU": f"{out['params_per_gpu'] / 1e9:.2f}B", "state GB": round(out["memory"]["total"] / 1e9, 2)}
        row |= {f"{short[k]} GB": round(v / 1e9, 1) for k, v in out["comm"].items()}
        rows[name] = row | {"bubble": round(out["bubble"], 2)}
    return pd.DataFrame(rows).T


def training_budget(flops, *, peak_flops, utilization, n_devices=1, price_per_device_hour=None):
    """Time and cost of `flops` of training on devices of `peak_flops` FLOP/s each, of which a
    fraction `utilization` is achieved (model FLOPs utilisation, MFU).

    Returns a dict: device_hours, device_years, days (wall clock on `n_devices`) and, when
    `price_per_device_hour` is given, cost in the same currency.
    """
    flops, peak_flops = _positive("flops", flops), _positive("peak_flops", peak_flops)
    utilization = _positive("utilization", utilization)
    if utilization > 1:
        raise ValueError(f"utilization is a fraction of the peak, at most 1, got {utilization!r}")
    n_devices = _positive_int("n_devices", n_devices)
    hours = flops / (peak_flops * utilization) / 3600
    out = {"device_hours": hours, "device_years": hours / (24 * 365.25), "days": hours / n_devices / 24}
    if price_per_device_hour is not None:
        out["cost"] = hours * _positive("price_per_device_hour", price_per_device_hour)
    return out


def inference_flops(n_params, tokens=1):
    """Forward FLOP to process or generate `tokens` tokens with an N-parameter model: 2 N each
    (one multiply-add per parameter; attention over a long context adds to it)."""
    tokens_arr = np.asarray(tokens, dtype=float)
    if not np.all(np.isfinite(tokens_arr)) or np.any(tokens_arr < 0):
        raise ValueError(f"tokens must be finite and >= 0, got {tokens!r}")
    return 2.0 * _positive("n_params", n_params) * (tokens_arr if tokens_arr.ndim else float(tokens_arr))


def moe_costs(models):
    """What a mixture-of-experts model costs, priced by its active and by its total parameters.
    `models`: {name: (total, active, training tokens or None)}. One row per model: parameters (in
    billions), training FLOP as 6 x active x D and, for comparison, 6 x total x D (where D is known),
    forward GFLOP per token served (2 x active), and bf16 weights in GB (2 bytes per parameter) of the
    whole model and of a dense model of the active size."""
    rows = {}
    for name, (total, active, tokens) in models.items():
        rows[name] = {"total (B)": total / 1e9, "active (B)": active / 1e9,
                      "6 active D": training_flops(active, tokens) if tokens else np.nan,
                      "6 total D": training_flops(total, tokens) if tokens else np.nan,
                      "GFLOP/token": inference_flops(active) / 1e9,
                      "bf16 GB": 2 * total / 1e9, "dense bf16 GB": 2 * active / 1e9}
    return pd.DataFrame(rows).T


def inference_aware_optimal(loss, inference_tokens, fit=HOFFMANN_2022):
    """Sardana et al. 2023: the model that reaches `loss` (on `fit`'s parametric law) with the
    least total compute, training 6 N D plus serving 2 N `inference_tokens`.

    For each N the law fixes the training tokens D(N) that reach the loss; the total is
    minimised over N numerically. Returns a dict: n, d (training tokens), tokens_per_param,
    training_flops, inference_flops, total_flops.
    """
    from scipy.optimize import minimize_scalar

    fit = _fit(fit)
    loss = float(loss)
    if not loss > fit.E:
        raise ValueError(f"loss must be above the fit's irreducible loss E = {fit.E}, got {loss!r}")
    d_inf = float(inference_tokens)
    if not math.isfinite(d_inf) or d_inf < 0:
        raise ValueError(f"inference_tokens must be finite and >= 0, got {inference_tokens!r}")
    n_min = (fit.A / (loss - fit.E)) ** (1 / fit.alpha)  # below this size no amount of data suffices

    def tokens(n):
        return (fit.B / (loss - fit.E - fit.A / n ** fit.alpha)) ** (1 / fit.beta)

    def log_total(log_n):
        n = 10 ** log_n
        return math.log(6 * n * tokens(n) + 2 * n * d_inf)

    lo = math.log10(n_min) + 1e-6
    res = minimize_scalar(log_total, bounds=(lo, lo + 6), method="bounded", options={"xatol": 1e-8})
    n = 10 ** res.x
    d = tokens(n)
    n, d = float(n), float(d)
    return {"n": n, "d": d, "tokens_per_param": d / n, "training_flops": 6 * n * d,
            "inference_flops": 2 * n * d_inf, "total_flops": 6 * n * d + 2 * n * d_inf}


def effective_data(unique_tokens, epochs, r_star=15.4):
    """Muennighoff et al. 2023 (eq. 5): the fresh-data equivalent D' of `epochs` passes over
    `unique_tokens` tokens, D' = U + U R* (1 - exp(-R / R*)) with R = epochs - 1 repetitions;
    R*_D = 15.4 is their fitted constant, an e-folding constant: the worth of a further repetition
    falls by a factor e every R* repetitions, so it halves after about R* ln 2 = 10.7 repetitions."""
    u = _positive("unique_tokens", unique_tokens)
    epochs = _positive("epochs", epochs)
    if np.any(np.asarray(epochs) < 1):
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    r = np.asarray(epochs, dtype=float) - 1
    out = u + u * r_star * (1 - np.exp(-r / r_star))
    return out if np.ndim(out) else float(out)


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
    """A transformers GPT2Config of the given shape (d_ff = 4 d_model, dropout off, bos = eos = the
    last id of the vocabulary, which for GPT-2's 50257 tokens is its own 50256)."""
    from transformers import GPT2Config

    if d_model % n_head:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_head ({n_head})")
    # bos/eos: GPT2Config's default 50256 only exists in GPT-2's own vocabulary; use the last id
    defaults = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                    bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
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


def growth_per_year(dates, values, level=0.95):
    """Least-squares fit of log2(values) against the date in years, as a growth factor per year
    with its `level` confidence interval (t distribution on the slope, n - 2 degrees of freedom).
    Returns dict factor, low, high, n. Unlike `doubling_time` it also works for a flat or
    shrinking trend, where a doubling time is meaningless."""
    from scipy import stats

    dates = pd.to_datetime(pd.Series(dates))
    values = _positive("values", np.asarray(values, dtype=float))
    if len(dates) != np.size(values) or len(dates) < 3:
        raise ValueError("growth_per_year needs at least three dates and as many values")
    years = (dates.dt.year + (dates.dt.dayofyear - 1) / 365.25).to_numpy(float)
    fit = stats.linregress(years, np.log2(values))
    half = stats.t.ppf(0.5 + level / 2, len(years) - 2) * fit.stderr
    return {"factor": 2.0 ** fit.slope, "low": 2.0 ** (fit.slope - half), "high": 2.0 ** (fit.slope + half),
            "n": len(years)}


def allocation_table(runs, fits=None):
    """Each published run of `runs` (a frame with name, parameters, training_tokens and
    training_flop, NaN where no budget was published: then 6ND) against the compute-optimal size
    of `fits` (default: Hoffmann 2022 and Besiroglu 2024) for its budget, with Chinchilla's
    predicted loss of the run and of the optimum. One row per model; short column names."""
    fits = fits or [HOFFMANN_2022, BESIROGLU_2024]
    rows = []
    for _, m in runs.iterrows():
        published = not pd.isna(m.training_flop)
        c = m.training_flop if published else training_flops(m.parameters, m.training_tokens)
        row = {"model": m["name"], "N": m.parameters, "D": m.training_tokens,
               "D/N": round(m.training_tokens / m.parameters, 1), "C (FLOP)": c,
               "C from": "paper" if published else "6ND"}
        for fit in fits:
            row[f"N/N_opt {fit.name[-4:]}"] = round(m.parameters / compute_optimal(c, fit)[0], 2)
        n_opt, d_opt = compute_optimal(c, fits[0])
        row["loss"] = round(float(chinchilla_loss(m.parameters, m.training_tokens, fits[0])), 3)
        row["loss at N_opt"] = round(float(chinchilla_loss(n_opt, d_opt, fits[0])), 3)
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


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


def _ngram_keys(ids, n, v):
    ctx = np.zeros(len(ids) - n + 1, dtype=np.int64)
    for i in range(n - 1):
        ctx = ctx * v + ids[i:len(ids) - n + 1 + i]
    return ctx, ctx * v + ids[n - 1:]


class _NgramCounts:
    """Counts of every n-gram and every (n-1)-character context of a text (ids in `vocab`)."""

    def __init__(self, text, n, vocab):
        self.n, self.v, self.vocab = n, len(vocab), vocab
        ctx, key = _ngram_keys(self.ids(text), n, self.v)
        self.keys, self.key_counts = np.unique(key, return_counts=True)
        self.ctxs, self.ctx_counts = np.unique(ctx, return_counts=True)

    def ids(self, text):
        unknown = set(text) - set(self.vocab)
        if unknown:
            raise ValueError(f"ngram_loss: characters not in the vocabulary: {sorted(unknown)[:10]}")
        if len(text) < self.n:
            raise ValueError(f"ngram_loss: a text shorter than n = {self.n}")
        return np.fromiter((self.vocab[c] for c in text), dtype=np.int64, count=len(text))

    def loss(self, text, k):
        def lookup(table, counts, query):
            pos = np.clip(np.searchsorted(table, query), 0, len(table) - 1)
            return np.where(table[pos] == query, counts[pos], 0)

        ctx, key = _ngram_keys(self.ids(text), self.n, self.v)
        p = (lookup(self.keys, self.key_counts, key) + k) / (lookup(self.ctxs, self.ctx_counts, ctx) + k * self.v)
        return float(-np.log(p).mean())


def ngram_loss(train_text, eval_text, n=3, k=0.1, vocab=None):
    """Held-out loss (nats per character) of an add-k smoothed character n-gram model counted on
    `train_text` and scored on every character of `eval_text` after its first n - 1.

    P(c | the n - 1 characters before it) = (count(context, c) + k) / (count(context) + k V).
    `vocab` defaults to `char_vocab` of both texts together (V symbols)."""
    n, k = _positive_int("n", n), _positive("k", k)
    vocab = vocab or char_vocab(train_text + eval_text)
    if len(vocab) ** n >= 2 ** 62:
        raise ValueError(f"ngram_loss: n = {n} is too large for a vocabulary of {len(vocab)}")
    return _NgramCounts(train_text, n, vocab).loss(eval_text, k)


def ngram_baseline(text, *, val_fraction=0.1, orders=(1, 2, 3, 4, 5, 6), ks=(0.001, 0.01, 0.1, 1.0)):
    """The simplest strong baseline of a character language model, on `run_sweep`'s split.

    The last `val_fraction` of `text` is held out (as in `run_sweep`). The order n and smoothing
    k are chosen on a development slice (the last `val_fraction` of the training part, the model
    counted on the rest); the chosen model is then counted on the whole training part and scored
    once on the held-out text. Returns (table of development losses, dict n, k, val_loss)."""
    vocab = char_vocab(text)
    split = int(len(text) * (1 - val_fraction))
    train_text, val_text = text[:split], text[split:]
    dev_split = int(len(train_text) * (1 - val_fraction))
    rows = []
    for n in orders:
        counts = _NgramCounts(train_text[:dev_split], _positive_int("n", n), vocab)
        rows += [{"n": n, "k": k, "dev_loss": counts.loss(train_text[dev_split:], _positive("k", k))} for k in ks]
    table = pd.DataFrame(rows)
    best = table.loc[table.dev_loss.idxmin()]
    n, k = int(best.n), float(best.k)
    return table, {"n": n, "k": k, "val_loss": ngram_loss(train_text, val_text, n, k, vocab)}


# ---------------------------------------------------------------- the experiment

# (n_layer, d_model, n_head) of each size. "cpu": the notebook's default (about a minute of
# training on a quiet 2-core CPU; 6.6e3 to 4.5e5 non-embedding parameters, 1.8 decades; at least
# two layers, since one-layer models fall off the trend; its one learning rate is the one chosen on
# validation windows by `scripts/scaling_sweep.py --preset cpu --lrs ...`, recorded in
# data/scaling_sweep/cpu_lr_grid.csv); "gpu_repeated": the bigger sweep of
# scripts/scaling_sweep.py, which repeats the novel about 80 times (see its comment).
SWEEPS = {
    "cpu": {"sizes": [(2, 16, 2), (2, 24, 2), (2, 32, 4), (2, 48, 4), (3, 64, 4), (4, 96, 4)],
            "steps": 300, "batch_size": 16, "block_size": 64, "lr": 0.005},
    # NOT Kaplan's regime: 3000 steps x 64 x 256 = 49M characters from a ~616k-character training
    # split, about 80 epochs. It measures how larger models overfit repeated text.
    "gpu_repeated": {"sizes": [(2, 64, 4), (2, 128, 4), (4, 192, 6), (4, 256, 8), (6, 384, 8),
                              (8, 512, 8), (12, 768, 12)],
                     "steps": 3000, "batch_size": 64, "block_size": 256, "lr": 1e-3},
}


def run_sweep(text, sizes, *, steps, batch_size, block_size, lr, eval_every=None, val_fraction=0.1,
              eval_windows=128, seed=0, threads=1, workers=1, progress=False):
    """Train one GPT-2-shaped character model per (n_layer, d_model, n_head) in `sizes` for the
    same number of steps with the course's `train` loop; returns (results, histories, models).

    The last `val_fraction` of `text` is held out: `eval_windows` windows of it are scored every
    `eval_every` steps (history column eval_loss), all of it once at the end (results val_loss).
    results: one row per size with its parameter counts, the held-out loss, tokens seen and
    training FLOP, both as 6 N D with N non-embedding (`flops`) and counted with attention and
    output head (`flops_counted`, `flops_per_token` from `flops_per_token`). histories: dict name -> the DataFrame `train` returned;
    models: dict name -> the trained GPT2LMHeadModel.
    `threads`: torch CPU threads while training (models this small run faster on one thread
    than on two; the previous setting is restored afterwards).
    `workers`: how many sizes train at once, each with `threads` threads: this process and workers - 1
    others (started afresh, so each first imports torch and transformers, a few seconds). Sizes are
    ordered by n_layer d_model^2: the other processes take the largest sizes first, this one works down
    from the next largest, and a process that comes free takes the smallest size left, so that they
    end close together. The runs are independent and seeded
    alike, so the numbers are those of one after another.
    """
    if not sizes:
        raise ValueError("run_sweep: no sizes given")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"run_sweep: workers must be a whole number >= 1, got {workers!r}")
    settings = dict(text=text, steps=steps, batch_size=batch_size, block_size=block_size, lr=lr,
                    eval_every=eval_every, val_fraction=val_fraction, eval_windows=eval_windows, seed=seed,
                    threads=threads, progress=progress)
    shapes = [tuple(shape) for shape in sizes]
    if workers == 1:
        runs = [_train_size(shape, **settings) for shape in shapes]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from transformers.utils import logging as transformers_logging

        waiting = sorted(range(len(shapes)), key=lambda i: -shapes[i][0] * shapes[i][1] ** 2)
        runs, futures = [None] * len(shapes), {}
        with ProcessPoolExecutor(workers - 1, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=transformers_logging.set_verbosity,
                                 initargs=(transformers_logging.get_verbosity(),)) as pool:  # as quiet as this process
            while waiting:
                while waiting and sum(not future.done() for future in futures.values()) < workers - 1:
                    i = waiting.pop(-1 if futures else 0)  # a free process: the largest size first, then the smallest left
                    futures[i] = pool.submit(_train_size, shapes[i], **settings)
                if waiting:  # this one works down from the largest left
                    i = waiting.pop(0)
                    runs[i] = _train_size(shapes[i], **settings)
            for i, future in futures.items():
                runs[i] = future.result()
    rows = [row for row, _, _ in runs]
    histories = {row["name"]: history for row, history, _ in runs}
    models = {row["name"]: model for row, _, model in runs}
    return pd.DataFrame(rows), histories, models


def _train_size(shape, *, text, steps, batch_size, block_size, lr, eval_every, val_fraction, eval_windows, seed,
                threads, progress):
    """One size of `run_sweep`: (results row, history, trained model)."""
    import torch
    from transformers import GPT2LMHeadModel

    from .training import train

    n_layer, d_model, n_head = shape
    vocab = char_vocab(text)
    split = int(len(text) * (1 - val_fraction))
    train_set = CharWindows(text[:split], vocab, block_size)
    val_set = CharWindows(text[split:], vocab, block_size)
    val_subset = CharWindows.__new__(CharWindows)
    val_subset.windows = val_set.windows[:eval_windows]
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads or old_threads)
    try:
        torch.manual_seed(seed)
        config = gpt2_config(n_layer, d_model, n_head, vocab_size=len(vocab),
                             n_positions=block_size, bos_token_id=None, eos_token_id=None)
        model = GPT2LMHeadModel(config)
        counts = count_parameters(model)
        history = train(model, train_set, batch_size=batch_size, max_steps=steps, lr=lr,
                        eval_fn=lambda m: {"eval_loss": loss_on(m, val_subset)},
                        eval_every=eval_every, seed=seed, progress=progress)
        tokens = steps * batch_size * block_size
        per_token = flops_per_token(n_layer, d_model, block_size, len(vocab))["training"]
        row = {"name": f"L{n_layer}-d{d_model}", "n_layer": n_layer, "d_model": d_model, "n_head": n_head,
               "non_embedding": counts["non_embedding"], "total": counts["total"],
               "approx_12Ld2": non_embedding_approx(n_layer, d_model),
               "tokens": tokens, "flops": training_flops(counts["non_embedding"], tokens),
               "flops_per_token": per_token, "flops_counted": per_token * tokens,
               "train_loss": history["loss"].tail(20).mean(),
               "val_loss": loss_on(model, val_set),
               "seconds": history["seconds"].iloc[-1]}
    finally:
        torch.set_num_threads(old_threads)
    return row, history, model


def compute_curves(results, histories, tokens_per_step):
    """Every evaluation of every run as one table: name, non_embedding, step, tokens (seen so
    far), flops (6 N D so far), flops_counted (with attention and head, where `results` has
    flops_per_token) and eval_loss."""
    frames = []
    for _, row in results.iterrows():
        h = histories[row["name"]].dropna(subset=["eval_loss"])
        tokens = h["step"].to_numpy() * tokens_per_step
        frame = pd.DataFrame({"name": row["name"], "non_embedding": row["non_embedding"],
                              "step": h["step"].to_numpy(), "tokens": tokens,
                              "flops": 6.0 * row["non_embedding"] * tokens,
                              "eval_loss": h["eval_loss"].to_numpy()})
        if "flops_per_token" in row:
            frame.insert(5, "flops_counted", row["flops_per_token"] * tokens)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def compute_frontier(curves, n_bins=12, x="flops"):
    """The compute-efficient frontier: in each of `n_bins` log-spaced compute bins, the lowest
    loss any run reached with at most that much compute (column `x`: "flops" for 6 N D,
    "flops_counted" for the full count). Returns flops (the compute of the evaluation that holds
    the bin's best loss, so that every point lies on a run's curve), eval_loss, name, one row per
    distinct evaluation."""
    if curves.empty:
        raise ValueError("compute_frontier: no evaluation points")
    if x not in curves.columns:
        raise ValueError(f"compute_frontier: curves has no column {x!r} (it has {list(curves.columns)})")
    edges = np.logspace(np.log10(curves[x].min()), np.log10(curves[x].max()), n_bins)
    rows = []
    for c in edges:
        seen = curves[curves[x] <= c * (1 + 1e-9)]
        best = seen.loc[seen.eval_loss.idxmin()]
        rows.append({"flops": best[x], "eval_loss": best.eval_loss, "name": best["name"]})
    return pd.DataFrame(rows).drop_duplicates().reset_index(drop=True)


def load_sweep_records(seeds, folder=None, preset="cpu"):
    """{seed: (results, curves)} of the fixed-step sweeps that scripts/scaling_sweep.py wrote to
    data/scaling_sweep/<preset>_seed<k>.csv and <preset>_seed<k>_curves.csv."""
    from .core import data_path

    folder = folder or data_path("scaling_sweep")
    out = {}
    for seed in seeds:
        path = folder / f"{preset}_seed{seed}.csv"
        if not path.exists():
            raise FileNotFoundError(f"load_sweep_records: no record {path.name} in {folder.name}/")
        out[seed] = (pd.read_csv(path, comment="#"),
                     pd.read_csv(path.with_name(path.stem + "_curves.csv"), comment="#"))
    return out


def load_lr_grid(preset="cpu", folder=None):
    """(table, command) of the learning-rate choice that `scripts/scaling_sweep.py --lrs` wrote to
    data/scaling_sweep/<preset>_lr_grid.csv: validation loss per size (rows) and rate (columns),
    with a last row "mean" over the sizes (the rate chosen is the column with the lowest mean), and
    the command that made the record."""
    from .core import data_path

    path = (folder or data_path("scaling_sweep")) / f"{preset}_lr_grid.csv"
    grid = pd.read_csv(path, comment="#")
    table = grid.pivot(index="name", columns="lr", values="validation_loss").loc[grid.name.unique()]
    table.loc["mean"] = table.mean()
    command = path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# made by: ").split(" | ")[0]
    return table, command


def sweep_exponents(results, curves, *, min_step=50):
    """The exponents one fixed-step sweep gives: alpha_N of the pure power law in non-embedding N
    and its loss extrapolated to 10x the largest N, alpha and E of the offset form and its
    extrapolation to the same N, alpha_C of the compute frontier (counted FLOP, evaluations from
    `min_step` on), and a_frontier, the slope of log N against log C along that frontier (Kaplan's
    route to N_opt ~ C^a, see `utils.isoflop.frontier_exponent`)."""
    from .isoflop import frontier_exponent

    pure = fit_power_law(results.non_embedding, results.val_loss)
    offset = fit_offset_power_law(results.non_embedding, results.val_loss)
    late = curves[curves.step >= min_step]
    frontier = compute_frontier(late, x="flops_counted")
    a, _ = frontier_exponent(curves, results.set_index("name").non_embedding, min_step=min_step)
    n_far = 10 * results.non_embedding.max()
    return {"alpha_N": pure["alpha"], "L(10 N_max) pure": float(pure["predict"](n_far)),
            "alpha_N offset": offset["alpha"], "E offset": offset["E"], "L(10 N_max) offset": float(offset["predict"](n_far)),
            "alpha_C": fit_power_law(frontier.flops, frontier.eval_loss)["alpha"], "a_frontier": a,
            "largest loss": float(results.val_loss.iloc[-1])}


def seed_table(per_seed):
    """{seed: sweep_exponents(...)} as one table with a row per seed, then the mean, the sample
    standard deviation and a 95% t-interval for the mean (what a rerun with another seed moves)."""
    from scipy.stats import t

    table = pd.DataFrame(per_seed).T
    table.index = [f"seed {k}" for k in table.index]
    n = len(table)
    if n < 2:
        raise ValueError(f"seed_table needs at least 2 seeds, got {n}")
    mean, sd = table.mean(), table.std(ddof=1)
    half = t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    summary = pd.DataFrame({"mean": mean, "sd": sd, "95% low": mean - half, "95% high": mean + half}).T
    return pd.concat([table, summary])


def seed_interval(table, column, digits=3):
    """"mean [low, high]" of one column of `seed_table` (the mean over seeds and its 95% t-interval)."""
    if column not in table.columns:
        raise ValueError(f"seed_interval: no column {column!r} in the seed table")
    m, lo, hi = (table.loc[row, column] for row in ("mean", "95% low", "95% high"))
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def repeated_sampling(p, ks, *, wrong_answers=10, draws=200, seed=0):
    """Test-time compute by repeated sampling, for problems whose single-sample success rates are
    `p` (one per problem). For each k in `ks`: coverage (pass@k, the share of problems with at least
    one right answer among k samples, 1 - (1 - p)^k averaged over problems); majority vote in the
    worst case, where every wrong sample gives the same wrong answer (won only when more than half of
    the k samples are right; binomial tail); and plurality vote when the wrong samples are spread
    evenly over `wrong_answers` distinct wrong answers (won when the right answer is the most frequent;
    a tie is won with probability 1 / the number of answers tied), estimated from `draws` simulated
    sets of k samples per problem (`seed`). Returns a DataFrame indexed by k."""
    from scipy.stats import binom

    p = np.asarray(p, dtype=float)
    if p.ndim != 1 or p.size == 0 or ((p < 0) | (p > 1)).any():
        raise ValueError("repeated_sampling: p must be a non-empty list of probabilities in [0, 1]")
    m, draws = _positive_int("wrong_answers", wrong_answers), _positive_int("draws", draws)
    rng = np.random.default_rng(seed)
    answer_p = np.column_stack([p] + [(1 - p) / m] * m)  # the right answer first, then m wrong ones
    rows = []
    for k in ks:
        k = _positive_int("k", k)
        counts = rng.multinomial(k, answer_p, size=(draws, p.size))  # (draws, problems, 1 + m)
        right, top_wrong = counts[..., 0], counts[..., 1:].max(axis=-1)
        tied = (counts[..., 1:] == right[..., None]).sum(axis=-1)
        won = np.where(right > top_wrong, 1.0, np.where(right == top_wrong, 1 / (1 + tied), 0.0))
        rows.append({"k": k, "coverage (pass@k)": float(np.mean(1 - (1 - p) ** k)),
                     "majority vote, one wrong answer": float(np.mean(binom.sf(k // 2, k, p))),
                     f"plurality vote, {m} wrong answers": float(won.mean())})
    return pd.DataFrame(rows).set_index("k")


def shape_table(shapes, vocab_size, block_size):
    """Parameter counts of GPT-2 models of the (n_layer, d_model, n_head) `shapes`, built on the
    meta device (no memory): one row per shape with total, embedding and non-embedding counts and
    the 12 n_layer d_model^2 approximation."""
    import torch
    from transformers import GPT2LMHeadModel

    rows = []
    for n_layer, d_model, n_head in shapes:
        with torch.device("meta"):
            m = GPT2LMHeadModel(gpt2_config(n_layer, d_model, n_head, vocab_size=vocab_size,
                                            n_positions=block_size))
        rows.append({"n_layer": n_layer, "d_model": d_model, "n_head": n_head, **count_parameters(m),
                     "12 L d^2": non_embedding_approx(n_layer, d_model)})
    return pd.DataFrame(rows)


def embedding_share(shapes, vocab_size=50257, n_positions=1024):
    """For (n_layer, d_model) `shapes` with GPT-2's vocabulary and context (Kaplan's setting):
    non-embedding parameters (12 L d^2), embedding parameters and all / non-embedding."""
    rows = []
    for n_layer, d_model in shapes:
        ne, e = non_embedding_approx(n_layer, d_model), embedding_parameters(d_model, vocab_size, n_positions)
        rows.append({"n_layer": n_layer, "d_model": d_model, "non-embedding": f"{ne:.2g}",
                     "embedding": f"{e:.2g}", "all / non-embedding": round((ne + e) / ne, 2)})
    return pd.DataFrame(rows)


def tokens_to_reach(curves, loss):
    """Sample efficiency: for each run in `curves` (from `compute_curves`), the training tokens
    after which its held-out loss first fell to `loss`, interpolated linearly in log tokens
    between the two evaluations around the crossing; NaN for a run that never got there.
    Returns a Series indexed by run name, in the order of `curves`."""
    out = {}
    for name, g in curves.groupby("name", sort=False):
        t, y = g["tokens"].to_numpy(float), g["eval_loss"].to_numpy(float)
        below = np.flatnonzero(y <= loss)
        if not len(below):
            out[name] = float("nan")
            continue
        i = below[0]
        if i == 0:
            out[name] = t[0]
            continue
        frac = (y[i - 1] - loss) / (y[i - 1] - y[i])
        out[name] = float(np.exp(np.log(t[i - 1]) + frac * (np.log(t[i]) - np.log(t[i - 1]))))
    return pd.Series(out, name=f"tokens to loss {loss}")


# ---------------------------------------------------------------- figures (plain matplotlib)

def plot_timeline(df, *, fit_line=None, fits=None, ax=None, save=None):
    """Parameters against release date on a log scale; dense models as dots, mixture-of-experts
    models as open diamonds (total parameters) joined to a small filled diamond (active
    parameters per token, where the table has them). Labels placed by `label_points`.

    `fit_line`: one fitted function of the date, drawn over the whole table; `fits`: several,
    each a tuple (label, function, first date, last date) drawn over its own range."""
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
    for k, (label, line, first, last) in enumerate(fits or []):
        span = pd.date_range(pd.Timestamp(first), pd.Timestamp(last), periods=50)
        ax.plot(span, line(span), color=("0.3", "C2", "C4")[k % 3], ls=("--", "-.", ":")[k % 3],
                lw=1.5, label=label)
    ax.set_yscale("log")
    ax.set(xlabel="release date", ylabel="parameters")
    ax.xaxis.set_major_locator(mdates.YearLocator())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    ax.set_xlim(df.date.min() - pd.Timedelta(days=120), df.date.max() + pd.Timedelta(days=500))
    ax.set_ylim(df.parameters.min() / 3, df.parameters.max() * 8)  # room for the labels
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
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
    from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

    from .plotting import plot_power_law, save_figure

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [
        (np.logspace(5, 11, 50), kaplan_loss_n, "alpha_N", "non-embedding parameters N", "L(N)"),
        (np.logspace(8, 13, 50), kaplan_loss_d, "alpha_D", "tokens D", "L(D)"),
        (np.logspace(17, 25, 50), kaplan_loss_c, "alpha_C", "compute C_min (FLOP)", "L(C_min)"),
    ]
    for ax, (x, law, key, xlabel, name) in zip(axes, panels):
        y = law(x)
        label = f"{name}, slope -{KAPLAN[key]}"
        plot_power_law(x, {label: y}, xlabel=xlabel, ylabel="test loss (nats/token)", ax=ax,
                       styles={label: {"color": "C0", "lw": 2}})
        _range_fan(ax, x, y)
        ax.yaxis.set_major_locator(MaxNLocator(5))  # a few plain ticks on every panel
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", alpha=0.2)
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
        ax.semilogx(n, chinchilla_loss(n, c / (6 * n), fit), color=f"C{k}", label=f"C = {c:.3g} FLOP")
        ax.plot(n_opt, chinchilla_loss(n_opt, d_opt, fit), "o", color=f"C{k}", ms=6)
    ax.set(xlabel="parameters N", ylabel="predicted loss L(N, C/6N) (nats/token)",
           title=f"iso-FLOP curves of the {fit.name} fit (dots: minimum)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if save:
        save_figure(fig, save)
    return ax


def _log_axes_plain(ax):
    """Plain numbers (not powers of ten) on a log y axis that spans less than a decade."""
    from matplotlib.ticker import ScalarFormatter

    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.grid(True, which="both", alpha=0.3)


def _size_styles(names):
    """One colour, marker and line style per run, so that sizes stay apart in grey print too."""
    import matplotlib.pyplot as plt

    markers, lines = "os^Dvp*hX", ["-", "--", "-.", ":"]
    n = max(1, len(names) - 1)
    return {name: {"color": plt.cm.viridis(0.9 * k / n), "marker": markers[k % len(markers)],
                   "ls": lines[k % len(lines)]} for k, name in enumerate(names)}


def _curves_per_size(curves, x):
    """New axes with one held-out-loss line per run of `curves` against column `x`."""
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(7.5, 4.8))
    styles = _size_styles(list(dict.fromkeys(curves.name)))
    for name, g in curves.groupby("name", sort=False):
        ax.loglog(g[x], g.eval_loss, lw=1.2, ms=3.5, label=name, **styles[name])
    return ax, styles


def _finish_loss_axes(ax, xlabel, title, save):
    from .plotting import save_figure

    ax.set(xlabel=xlabel, ylabel="held-out loss (nats per character)", title=title)
    _log_axes_plain(ax)
    ax.legend(fontsize=8, ncol=2)
    if save:
        save_figure(ax.figure, save)
    return ax


def plot_allocation(budgets, allocations, points=None, *, save=None):
    """Compute-optimal parameters (left) and tokens (right) against the budget, one line per
    allocation rule; `allocations` maps a label to (N array, D array) over `budgets`, `points`
    maps a model's label to its (C, N, D), drawn as markers on both panels."""
    import matplotlib.pyplot as plt

    from .plotting import plot_power_law, save_figure

    fig, (ax_n, ax_d) = plt.subplots(1, 2, figsize=(12, 4.4))
    plot_power_law(budgets, {k: v[0] for k, v in allocations.items()}, xlabel="training compute C (FLOP)",
                   ylabel="compute-optimal parameters N", ax=ax_n)
    plot_power_law(budgets, {k: v[1] for k, v in allocations.items()}, xlabel="training compute C (FLOP)",
                   ylabel="compute-optimal tokens D", ax=ax_d)
    for k, (label, (c, n, d)) in enumerate((points or {}).items()):
        marker = "*XPDo^"[k % 6]
        ax_n.plot(c, n, marker, color="k", ms=10, ls="none", label=label)
        ax_d.plot(c, d, marker, color="k", ms=10, ls="none", label=label)
    for ax in (ax_n, ax_d):
        if ax.get_legend():
            ax.get_legend().remove()
    handles, labels = ax_n.get_legend_handles_labels()
    fig.suptitle("How to split a training budget between parameters and tokens")
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8,
               frameon=False)
    if save:
        save_figure(fig, save)
    return fig


def plot_loss_vs_size(results, pure, fit, *, steps, extrapolate=10, save=None):
    """The sweep's held-out losses against non-embedding parameters, the pure power law `pure`
    and the offset fit `fit` (from `fit_power_law` / `fit_offset_power_law`), the latter
    extended `extrapolate` times past the largest model. The floor E is drawn where it lies near
    the losses; a fit that drives E towards zero gets a legend entry only."""
    import matplotlib.pyplot as plt

    from .plotting import save_figure

    n = results.non_embedding
    n_far = extrapolate * n.max()
    grid = np.logspace(np.log10(n.min()) - 0.2, np.log10(n_far), 100)
    inside = grid <= n.max()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(n, results.val_loss, "o", color="C0", ms=7, label=f"held-out loss after {steps} steps")
    ax.loglog(grid, pure["predict"](grid), color="0.5", lw=1,
              label=f"pure power law, alpha = {pure['alpha']:.3f} +/- {pure['alpha_err']:.3f}")
    ax.loglog(grid[inside], fit["predict"](grid[inside]), color="C1",
              label=f"offset fit, alpha = {fit['alpha']:.2f} +/- {fit['alpha_err']:.2f}")
    ax.loglog(grid[~inside], fit["predict"](grid[~inside]), color="C1", ls="--", label="extrapolation")
    curves = np.concatenate([results.val_loss, pure["predict"](grid), fit["predict"](grid)])
    low, high = 0.95 * curves.min(), 1.05 * curves.max()
    if fit["E"] >= low:  # the floor, where it lies within the losses' range
        ax.axhline(fit["E"], color="0.5", lw=0.8, ls=":", label=f"E = {fit['E']:.2f}")
        low = 0.95 * min(low, fit["E"])
    else:  # a floor far below every loss would stretch the axis over decades
        ax.plot([], [], color="0.5", lw=0.8, ls=":", label=f"E = {fit['E']:.2f} (below the axis)")
    ax.set_ylim(low, high)
    ax.set(xlabel="non-embedding parameters N", ylabel="loss (nats per character)",
           title=f"{len(results)} GPT-2 sizes on Pride and Prejudice")
    _log_axes_plain(ax)
    ax.legend(fontsize=8)
    if save:
        save_figure(fig, save)
    return ax


def plot_compute_frontier(curves, frontier, fit, *, x="flops_counted", save=None):
    """Held-out loss against training compute, one line (colour, marker, style) per size, the
    frontier of `compute_frontier` and its fit `fit` (a dict with `predict` and `alpha`)."""
    ax, _ = _curves_per_size(curves, x)
    ax.loglog(frontier.flops, frontier.eval_loss, "ko", ms=5, mfc="none", label="frontier")
    ax.loglog(frontier.flops, fit["predict"](frontier.flops), "k-", lw=1.5, alpha=0.7,
              label=f"power-law fit, alpha_C = {fit['alpha']:.3f}")
    xlabel = ("training compute, counted with attention and head (FLOP)" if x == "flops_counted"
              else "training compute C = 6 N D (FLOP)")
    return _finish_loss_axes(ax, xlabel, "Loss against compute: the lower envelope is the "
                             "compute-efficient frontier", save)


def plot_loss_forecast(history, fit, *, start, cut, window=10, save=None):
    """A run's training loss (running mean of `window` steps), the fit `fit` of steps
    start+1..cut and its extrapolation, the two ends of the fitted range marked and labelled,
    and the learning-rate schedule on a second axis."""
    import matplotlib.pyplot as plt

    from .plotting import save_figure

    smooth = history.loss.rolling(window, min_periods=1).mean()
    last = int(history.step.max())
    t = np.arange(start + 1, last + 1)
    fig, ax = plt.subplots(figsize=(7.5, 4.3))
    ax.plot(history.step, smooth, color="C0", label=f"training loss ({window}-step mean)")
    ax.plot(t[t <= cut], fit["predict"](t[t <= cut]), color="C1", lw=2, label=f"fit on steps {start + 1}-{cut}")
    ax.plot(t[t > cut], fit["predict"](t[t > cut]), color="C1", ls="--", label="extrapolation")
    ax.axvline(start, color="0.5", lw=0.8, ls=":", label=f"fit starts (step {start + 1}, after warm-up)")
    ax.axvline(cut, color="0.3", lw=0.8, ls="-.", label=f"fit ends (step {cut})")
    ax.set(xlabel="step", ylabel="loss (nats per character)",
           ylim=(smooth.min() * 0.95, smooth[start:].max() * 1.1),
           title="Forecasting the end of a run from its start")
    right = ax.twinx()
    right.plot(history.step, history.lr, color="0.6", lw=1, label="learning rate (right axis)")
    right.set_ylabel("learning rate", color="0.4")
    handles = ax.get_legend_handles_labels()
    extra = right.get_legend_handles_labels()
    ax.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=8, loc="upper right")
    if save:
        save_figure(fig, save)
    return ax


def plot_sample_efficiency(curves, loss, reached, *, save=None):
    """Held-out loss against training tokens seen, one line per size, the target `loss` as a
    horizontal line and, for each size, where it first reached it (`reached`, from
    `tokens_to_reach`)."""
    ax, styles = _curves_per_size(curves, "tokens")
    for name, tokens in reached.items():
        if np.isfinite(tokens):
            ax.plot(tokens, loss, "o", ms=9, mfc="none", mec=styles[name]["color"], mew=2)
    ax.axhline(loss, color="k", lw=0.8, ls=":", label=f"target loss {loss}")
    return _finish_loss_axes(ax, "training tokens (characters) seen",
                             "Sample efficiency: larger models reach a loss on fewer tokens", save)
