"""Multi-query associative recall (MQAR): what a fixed-size state forgets and softmax attention does not.

The task of Arora et al. 2023 ("Zoology", arXiv:2312.04927, sec. 3), made small enough for a CPU:
a sequence shows P key-value pairs, then asks for the value of each of the P keys again, in a new
order. Each pair is one position (the embedding of its key plus that of its value) and each query
one position (its key's embedding plus a learned query flag), so that one attention layer can
solve the task: a query must find the position whose key matches its own and read off its value.
Which attention does that is the only thing that changes between models:

- "softmax": causal softmax attention (it keeps every pair, like a KV cache);
- "linear": elu+1 linear attention (Katharopoulos et al. 2020), the state S = sum phi(k) v^T;
- "gated": the same state multiplied by a gate g_t = sigmoid(w . x_t + b) in (0, 1) per head
  before each token is added (a data-dependent scalar gate, as in Mamba-2 / Gated DeltaNet's decay);
- "delta": the delta rule of DeltaNet (Schlag et al. 2021, arXiv:2102.11174; Yang et al. 2024,
  arXiv:2406.06484): S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T with unit-length keys and
  beta_t = sigmoid(w . x_t) in (0, 1): writing a pair first removes what S already returned for
  that key, so up to d_k pairs with orthogonal keys are stored exactly;
- "taylor": Based's feature map (Arora et al. 2024, arXiv:2402.18668): q and k projected to
  TAYLOR_DIM dimensions and mapped to [1, x / d^(1/4), vec(x x^T) / (sqrt(2) sqrt(d))], whose dot
  product is 1 + q.k/sqrt(d) + (q.k)^2 / (2d), the second-order Taylor expansion of exp(q.k/sqrt(d)),
  then normalised linear attention: a state of (1 + d + d^2) x d_v numbers per head;
- "hybrid" (not in KINDS, trained only for its own record): the first half of the heads causal softmax
  attention, the other half elu+1 linear attention, in the one layer: attention beside a recurrent
  state, as the hybrid models since 2024 combine attention layers with recurrent ones;
- "softmax_head" (not in KINDS either): the hybrid without its linear half, whose heads then add nothing
  (their output is zero), trained with the hybrid's seeds and so from its initial weights: the control that
  tells what the hybrid's softmax head does alone from what the linear head adds.

The three recurrent models keep a state of d_k x d_v numbers per head whatever P is; softmax keeps
all P pairs. `train_recall` trains one model on freshly drawn sequences; `recall_on` scores it on a
fixed set of sequences (right/wrong per query, grouped by sequence for `utils.evaluation`).
"""
import math
import time

import torch
import torch.nn.functional as F

__all__ = ["KINDS", "HYBRID", "SOFTMAX_HEAD", "LABELS", "TAYLOR_DIM", "taylor_features", "RecallTask", "RecallModel", "delta_rule", "train_recall", "recall_on", "RECALL_RUN",
           "RECALL_STEPS", "recall_table", "interval_over_sequences", "cache_numbers", "paired_recall", "validation_curves", "chance_recall", "plot_recall"]

KINDS = ("softmax", "linear", "gated", "delta", "taylor")
HYBRID = "hybrid"  # half the heads softmax, half elu+1 linear; trained for its own record
SOFTMAX_HEAD = "softmax_head"  # the hybrid's softmax half alone, the other half silent: its control
TAYLOR_DIM = 8  # Based's reference code projects to 16; 8 keeps its state (73 features) near the others'


def taylor_features(x, is_query=True):
    """Based's second-order Taylor feature map: phi(q) . phi(k) = 1 + q.k/sqrt(d) + (q.k)^2/(2d)."""
    d = x.shape[-1]
    square = (x[..., :, None] * x[..., None, :]).flatten(-2) / (math.sqrt(2) * math.sqrt(d))
    return torch.cat([torch.ones_like(x[..., :1]), x / d ** 0.25, square], dim=-1)

# the shipped runs: every model gets the same steps, batch and lr. Notebook 02's mask comparison
# (scripts/sparse_recall.py) trains RECALL_RUN's 500 steps; notebook 03's record (scripts/associative_recall.py)
# trains RECALL_STEPS, because at 500 steps the recurrent models were still learning at 64 pairs
RECALL_RUN = dict(pairs=(8, 16, 32, 64), kinds=KINDS, seeds=(0, 1, 2), d_model=64, heads=2, steps=500,
                  batch_size=32, lr=3e-3, n_keys=256, n_values=64, test_sequences=256)
RECALL_STEPS = 2000


class RecallTask:
    """Sequences of `pairs` key-value pairs followed by the same keys as queries, in a new order.

    Keys are distinct within a sequence, drawn from `n_keys`; values from `n_values`, with repeats.
    `batch(size, gen)` returns (keys (size, 2P), values (size, 2P), is_query (2P,), targets (size, P)):
    positions 0..P-1 hold the pairs, P..2P-1 the queries (their value slot is unused).
    """

    def __init__(self, pairs, n_keys=256, n_values=64):
        for name, value in (("pairs", pairs), ("n_keys", n_keys), ("n_values", n_values)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RecallTask: {name} must be a positive integer, got {value!r}")
        if pairs > n_keys:
            raise ValueError(f"RecallTask: {pairs} distinct keys per sequence need n_keys >= pairs, got {n_keys}")
        self.pairs, self.n_keys, self.n_values = pairs, n_keys, n_values

    def batch(self, size, gen):
        p = self.pairs
        keys = torch.rand(size, self.n_keys, generator=gen).argsort(-1)[:, :p]  # distinct keys
        values = torch.randint(self.n_values, (size, p), generator=gen)
        order = torch.rand(size, p, generator=gen).argsort(-1)  # the queries' order
        query_keys = keys.gather(1, order)
        targets = values.gather(1, order)
        is_query = torch.cat([torch.zeros(p, dtype=torch.bool), torch.ones(p, dtype=torch.bool)])
        return (torch.cat([keys, query_keys], 1), torch.cat([values, torch.zeros_like(values)], 1),
                is_query, targets)


def delta_rule(q, k, v, beta):
    """DeltaNet's recurrence, token by token: q, k (..., n, d_k) with unit-length k, v (..., n, d_v),
    beta (..., n) in (0, 1). S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T, y_t = S_t^T q_t."""
    state = q.new_zeros(*q.shape[:-2], k.shape[-1], v.shape[-1])
    out = []
    for t in range(q.shape[-2]):
        kt, vt, bt = k[..., t, :], v[..., t, :], beta[..., t, None]
        old = (state * kt[..., :, None]).sum(-2)  # S^T k: what the state returns for this key now
        state = state + kt[..., :, None] * (bt * (vt - old))[..., None, :]
        out.append((state * q[..., t, :, None]).sum(-2))
    return torch.stack(out, dim=-2)


class RecallModel(torch.nn.Module):
    """One attention layer of the given kind between embeddings and a readout over the values."""

    def __init__(self, kind, *, n_keys=256, n_values=64, d_model=64, heads=2, seed=0):
        super().__init__()
        if kind not in KINDS + (HYBRID, SOFTMAX_HEAD):
            raise ValueError(f"RecallModel: kind must be one of {KINDS + (HYBRID, SOFTMAX_HEAD)}, got {kind!r}")
        if d_model % heads:
            raise ValueError(f"RecallModel: d_model {d_model} is not divisible by heads {heads}")
        if kind in (HYBRID, SOFTMAX_HEAD) and (heads < 2 or heads % 2):
            raise ValueError(f"RecallModel: {kind} splits its heads in two halves; got {heads} heads")
        torch.manual_seed(seed)
        self.kind, self.heads, self.d_head = kind, heads, d_model // heads
        self.key_emb = torch.nn.Embedding(n_keys, d_model)
        self.value_emb = torch.nn.Embedding(n_values, d_model)
        self.query_flag = torch.nn.Parameter(torch.randn(d_model) * 0.02)
        self.qkv = torch.nn.Linear(d_model, 3 * d_model)
        self.gate = torch.nn.Linear(d_model, heads)  # the gate (gated) or beta (delta) per head and token
        if kind == "gated":  # start near g = 1 (sigmoid(5) = 0.993), as forget gates are: a gate of 0.5
            torch.nn.init.constant_(self.gate.bias, 5.0)  # would erase all but the last few pairs
        if kind == "taylor":  # Based: queries and keys in TAYLOR_DIM dimensions before the feature map
            self.qk_small = torch.nn.Linear(d_model, 2 * heads * TAYLOR_DIM)
        self.out = torch.nn.Linear(d_model, d_model)
        self.readout = torch.nn.Sequential(torch.nn.LayerNorm(d_model), torch.nn.Linear(d_model, n_values))

    def state_numbers(self):
        """Numbers a recurrent layer keeps per sequence (S, and z where it normalises); None for softmax;
        for the hybrid, its linear heads' fixed state (its softmax heads keep a cache besides: `cache_numbers`)."""
        if self.kind in ("softmax", SOFTMAX_HEAD):
            return None
        if self.kind == HYBRID:
            return self.heads // 2 * (self.d_head * self.d_head + self.d_head)
        if self.kind == "taylor":
            features = 1 + TAYLOR_DIM + TAYLOR_DIM ** 2
            return self.heads * features * (self.d_head + 1)
        per_head = self.d_head * self.d_head + (self.d_head if self.kind in ("linear", "gated") else 0)
        return self.heads * per_head

    def forward(self, keys, values, is_query):
        from .linear_attention import decayed_linear_attention, causal_linear_attention

        x = self.key_emb(keys) + torch.where(is_query[:, None], self.query_flag, self.value_emb(values))
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.heads, self.d_head).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        if self.kind == "softmax":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif self.kind == HYBRID:  # softmax in the first half of the heads, elu+1 linear in the second
            h = self.heads // 2
            y = torch.cat([F.scaled_dot_product_attention(q[:, :h], k[:, :h], v[:, :h], is_causal=True),
                           causal_linear_attention(q[:, h:], k[:, h:], v[:, h:], chunk_size=32)], dim=1)
        elif self.kind == SOFTMAX_HEAD:  # the hybrid's softmax half; the other half's heads add nothing
            h = self.heads // 2
            y = torch.cat([F.scaled_dot_product_attention(q[:, :h], k[:, :h], v[:, :h], is_causal=True),
                           torch.zeros_like(v[:, h:])], dim=1)
        elif self.kind == "linear":
            y = causal_linear_attention(q, k, v, chunk_size=32)
        elif self.kind == "taylor":
            q, k = (t.view(b, n, self.heads, TAYLOR_DIM).transpose(1, 2) for t in self.qk_small(x).chunk(2, -1))
            y = causal_linear_attention(q, k, v, taylor_features, chunk_size=32)
        elif self.kind == "gated":
            log_gate = F.logsigmoid(self.gate(x)).transpose(1, 2)  # (b, heads, n)
            y = decayed_linear_attention(q, k, v, log_gate)
        else:
            beta = torch.sigmoid(self.gate(x)).transpose(1, 2)
            y = delta_rule(F.normalize(q, dim=-1), F.normalize(k, dim=-1), v, beta)
        return self.readout(x + self.out(y.transpose(1, 2).reshape(b, n, -1)))


def _loss_and_correct(model, task, batch):
    keys, values, is_query, targets = batch
    logits = model(keys, values, is_query)[:, task.pairs:]
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten()), logits.argmax(-1) == targets


def train_recall(kind, pairs, *, seed=0, steps=500, batch_size=32, lr=3e-3, d_model=64, heads=2,
                 n_keys=256, n_values=64, eval_every=0, eval_seed=1, eval_sequences=256):
    """Train one model on freshly drawn sequences (no sequence seen twice). Returns (model, task,
    seconds). AdamW with a linear warm-up over the first 10% of steps and cosine decay after it.
    With `eval_every`, the model's recall on the sequences of `recall_on(..., seed=eval_seed)` (validation)
    is measured every `eval_every` steps and kept in `model.validation_curve`: [(step, recall), ...]
    (the time it takes is not counted in `seconds`)."""
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
        raise ValueError(f"train_recall: eval_every must be a non-negative integer, got {eval_every!r}")
    task = RecallTask(pairs, n_keys, n_values)
    model = RecallModel(kind, n_keys=n_keys, n_values=n_values, d_model=d_model, heads=heads, seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    gen = torch.Generator().manual_seed(10_000 + seed)
    model.validation_curve, evaluating = [], 0.0
    start = time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        loss, _ = _loss_and_correct(model, task, task.batch(batch_size, gen))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if eval_every and (step % eval_every == 0 or step == steps):
            tick = time.perf_counter()
            correct, _ = recall_on(model, task, eval_sequences, seed=eval_seed)
            model.validation_curve.append((step, float(correct.mean())))
            evaluating += time.perf_counter() - tick
    return model.eval(), task, time.perf_counter() - start - evaluating


def recall_on(model, task, sequences=256, *, seed=1):
    """(right/wrong per query, the sequence each query belongs to) on `sequences` fixed sequences
    drawn with `seed` (a split of its own: training draws with seeds from 10,000 on)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        _, correct = _loss_and_correct(model, task, task.batch(sequences, gen))
    groups = torch.arange(sequences)[:, None].expand_as(correct)
    return correct.flatten().numpy(), groups.flatten().numpy()


LABELS = {"softmax": "softmax", "linear": "elu+1 linear", "gated": "gated state", "delta": "delta rule (DeltaNet)",
          "taylor": "Taylor (Based)", HYBRID: "hybrid: softmax head + elu+1 head",
          SOFTMAX_HEAD: "softmax head alone (hybrid without elu+1 head)"}


def cache_numbers(kind, pairs, d_model):
    """Numbers the softmax heads of a model keep for the P pairs of a sequence (their keys and values):
    all heads for softmax, half of them for the hybrid and its softmax head alone, none for the recurrent kinds."""
    share = {"softmax": 1.0, HYBRID: 0.5, SOFTMAX_HEAD: 0.5}.get(kind, 0.0)
    return int(2 * pairs * d_model * share)


def interval_over_sequences(per_sequence, confidence=0.95):
    """The interval that `recall_table` prints for recall per sequence (`per_sequence`: one share of right
    reads per sequence): a bootstrap over sequences (`utils.evaluation.bootstrap`), or, where no sequence
    holds an error and resampling them can only give 100% to 100%, the one-sided bound: with none of n
    sequences wrong, the chance that a sequence holds an error is below 1 - (1 - confidence)^(1/n)
    (Clopper-Pearson), and a sequence with an error loses at most all of its reads."""
    import numpy as np

    from . import evaluation as ev

    per_sequence = np.asarray(per_sequence, dtype=float)
    if (per_sequence == 1).all():
        bound = 1 - (1 - confidence) ** (1 / len(per_sequence))
        return f"≥ {1 - bound:.1%} (one-sided)"
    items = ev.bootstrap(per_sequence, percent=True, confidence=confidence)
    return f"{items.low:.1%} to {items.high:.1%}"


def recall_table(record, split="test"):
    """The shipped record as one row per model kind, number of pairs and width (d_head, where runs carry
    their own d_model): the numbers the layer keeps
    per sequence (for softmax, the keys and values of the P pairs in its cache), recall over seeds
    (`utils.evaluation.over_seeds`: mean, spread, range), and a 95% interval over the test sequences
    for the seed-averaged model (`interval_over_sequences`; each sequence's P queries resampled together,
    a one-sided bound where no sequence holds an error)."""
    import numpy as np
    import pandas as pd

    from . import evaluation as ev

    rows = []
    runs = pd.DataFrame(record["runs"])
    if "d_model" not in runs:
        runs["d_model"] = record["settings"]["d_model"]
    heads = record["settings"]["heads"]
    for (kind, p, d_model), group in runs.groupby(["kind", "pairs", "d_model"], sort=False):
        per_seed = [np.asarray(c) / p for c in group[f"{split}_correct"]]  # recall per sequence, per seed
        seeds = ev.over_seeds([r.mean() for r in per_seed], percent=True, digits=1)
        state = group.state_numbers.iloc[0]
        state = 0 if state is None or state != state else state  # softmax: no fixed state, only its cache
        state += cache_numbers(kind, p, d_model)  # the keys and values of the P pairs, a cache that grows with P
        rows.append({"model": LABELS[kind], "kind": kind, "pairs": p, "d_head": d_model // heads,
                     "state numbers": int(state),
                     "recall": seeds.mean, "seed min": seeds.min, "seed max": seeds.max,
                     "over seeds": str(seeds),
                     "95% interval over sequences": interval_over_sequences(np.mean(per_seed, axis=0))})
    return pd.DataFrame(rows)


def paired_recall(record, a, b, pairs, split="test"):
    """Model kind `a` minus kind `b` at `pairs` pairs on the same test sequences (recall per sequence
    averaged over seeds): `utils.evaluation.paired_bootstrap`, with its sign-flip p-value."""
    import numpy as np

    from . import evaluation as ev

    def per_sequence(kind):
        runs = [r for r in record["runs"] if r["kind"] == kind and r["pairs"] == pairs]
        if not runs:
            raise ValueError(f"paired_recall: no runs of {kind!r} with {pairs} pairs in the record")
        return np.mean([np.asarray(r[f"{split}_correct"]) / pairs for r in runs], axis=0)
    return ev.paired_bootstrap(per_sequence(a), per_sequence(b), percent=True)


def validation_curves(record, pairs):
    """Validation recall along training at `pairs` pairs (the runs' `validation_curve`, recorded every
    `eval_every` steps): one row per model kind, one column per step, the mean over seeds."""
    import numpy as np
    import pandas as pd

    rows = {}
    for run in record["runs"]:
        if run["pairs"] == pairs and run.get("validation_curve"):
            rows.setdefault(LABELS[run["kind"]], []).append(dict(run["validation_curve"]))
    if not rows:
        raise ValueError(f"validation_curves: no runs with {pairs} pairs and a validation curve in the record")
    return pd.DataFrame({model: {step: np.mean([c[step] for c in curves]) for step in curves[0]}
                         for model, curves in rows.items()}).T


def chance_recall(pairs, n_values):
    """Recall of a guess among the P values of the sequence, one of its P value slots taken at random:
    the asked pair's own slot (1 / P), or another whose value happens to be the same (values are drawn
    with replacement from n_values): 1/P + (1 - 1/P) / n_values."""
    for name, value in (("pairs", pairs), ("n_values", n_values)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"chance_recall: {name} must be a positive integer, got {value!r}")
    return 1 / pairs + (1 - 1 / pairs) / n_values


def plot_recall(table, *, d_head=None, n_values=None, zoom=False, ax=None):
    """Recall against the number of pairs, one line (own marker and style) per model, bars over the
    seed range; a dotted line at chance (`chance_recall`) and a dashed one at P = d_head, the number of
    keys a d_head-dimensional state per head can hold without overlap. With `zoom`, the y axis starts
    at the lowest seed's recall rounded down to 5 points, and the chance line, then below the axis, is
    named in the legend with its range."""
    import math

    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 4))
    looks = {"softmax": ("o", "-"), "linear": ("s", "--"), "gated": ("^", "-."), "delta": ("D", ":"),
             "taylor": ("v", (0, (5, 1, 1, 1))), HYBRID: ("P", (0, (3, 1))), SOFTMAX_HEAD: ("X", (0, (1, 2)))}
    for kind, group in table.groupby("kind", sort=False):
        marker, line = looks[kind]
        spread = [group.recall - group["seed min"], group["seed max"] - group.recall]
        ax.errorbar(group.pairs, group.recall, yerr=spread, marker=marker, ls=line, ms=5, capsize=3,
                    label=LABELS[kind])
    pairs = sorted(table.pairs.unique())
    bottom = math.floor(table["seed min"].min() * 20) / 20 if zoom else 0.0
    if n_values:
        chance = [chance_recall(int(p), int(n_values)) for p in pairs]
        if min(chance) >= bottom:
            ax.plot(pairs, chance, color="grey", lw=1, ls=":", label="chance: a guess among the P values in the sequence")
        else:
            ax.plot([], [], color="grey", lw=1, ls=":",
                    label=f"chance, {min(chance):.0%} to {max(chance):.0%}: below this axis")
    if d_head:
        ax.axvline(d_head, color="k", lw=0.8, ls="--", alpha=0.6, label=f"P = key size per head ({d_head})")
    ax.set(xscale="log", xticks=pairs, xlabel="key-value pairs P in the sequence (queries: all P)",
           ylabel="recall on test sequences", ylim=(bottom, 1.0 + (1.0 - bottom) * 0.05),
           title="Associative recall, one layer, same training budget (bars: range over seeds)")
    ax.set_xticklabels([str(p) for p in pairs])
    ax.minorticks_off()
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return ax
