"""Linearized attention, Performer's FAVOR+ and memory-efficient exact attention.

Every function takes queries, keys and values shaped (..., n, d): any leading dimensions
(batch, heads) are carried along. The pieces, in the order notebook 03 shows them:

- feature maps phi: `elu_plus_one` (Katharopoulos et al. 2020), `relu_features`, and `FavorPlus`
  (Choromanski et al. 2020: positive random features, orthogonal or iid projections, seeded);
- kernelized attention in two orders: `quadratic_kernel_attention` (phi(Q) phi(K)^T, normalised,
  times V) and `linear_kernel_attention` (phi(Q) times sums over the keys);
- causal linear attention by chunked prefix sums (`causal_linear_attention`) and by a running
  state (`recurrent_linear_attention`, `LinearAttentionRNN`);
- exact softmax attention: `naive_softmax_attention` (the n x n matrix) and
  `chunked_softmax_attention` (Rabe & Staats 2021: chunks, running max, log-sum-exp);
- generation with softmax attention and a KV cache (`SoftmaxKVCache`), and the benchmark suite
  "linear" (`python -m utils.benchmarks --suite linear [--long]`, `sweep` for a shorter run,
  `sweep_repeats` and `repeat_summary` for its spread over repeats, `slopes` for its exponents of n,
  `memory_records` for peak memory on one head beside the n x n score matrix);
- a gate on the recurrent state (RetNet, GLA, Mamba-2): `LinearAttentionRNN.step(..., log_decay)`
  and its parallel masked form `decayed_linear_attention`;
- linear attention inside a transformers model: `linear_attention_forward`, registered in
  `AttentionInterface` as `LINEAR_ATTENTION`; `char_gpt` and `compare_attention` train notebook 01's
  character GPT with either attention, beside `char_ngram_loss`; `window_losses` and
  `ngram_window_losses` score both on the same test windows, and `quality_seeds` and
  `quality_comparisons` read the multi-seed record of scripts/linear_attention_quality.py;
- `cache_numbers` and `cache_table` count what a transformers model keeps for generation (a KV
  cache that grows with the text, or Mamba's fixed convolution and recurrent states).
"""
import math
import statistics
import time

import torch
import torch.nn.functional as F

from .benchmarks import _sync, peak_mib, register, time_ms, time_pair

__all__ = [
    "elu_plus_one", "relu_features", "FavorPlus", "gaussian_projection",
    "quadratic_kernel_attention", "linear_kernel_attention", "causal_linear_attention",
    "recurrent_linear_attention", "LinearAttentionRNN", "SoftmaxKVCache", "generate_with_state",
    "decayed_linear_attention", "retnet_log_decays", "LINEAR_ATTENTION", "linear_attention_forward",
    "cache_numbers", "cache_table", "CACHE_KINDS",
    "char_gpt", "QUALITY_RUNS", "split_text", "char_ngram_loss", "compare_attention",
    "char_ngram_losses", "ngram_window_losses", "window_losses", "QUALITY_SEEDS",
    "naive_softmax_attention", "chunked_softmax_attention", "sdpa",
    "favor_error", "uniform_attention_error", "planted_keys", "plot_favor_error", "plot_quality", "quality_seeds", "quality_comparisons", "generation_times", "fit_slope", "crossover_n", "pass_crossovers", "bar_report", "BENCH_SHAPE",
    "sweep", "sweep_repeats", "repeat_summary", "causal_block_share", "causal_skip_times", "memory_records", "generation_records", "generation_summary", "NOTEBOOK_TOPS",
    "per_token_rise", "block_size_times", "favor_chunk_times", "length_times", "block_size_reading", "slopes",
]


# ----------------------------------------------------------------------------- checks
def _check_qkv(q, k, v, *, causal=False, who="attention"):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{who}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{who}: {name} must be shaped (..., n, d), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{who}: {name} must be a floating tensor, got {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"{who}: q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        raise ValueError(f"{who}: q, k, v must share their leading (batch, head) dimensions, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{who}: q and k need the same feature size d, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{who}: k and v need the same number of keys, got {k.shape[-2]} and {v.shape[-2]}")
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"{who}: causal attention needs as many queries as keys, "
                         f"got {q.shape[-2]} and {k.shape[-2]}")


def _check_positive_int(value, name, who):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: {name} must be a positive integer, got {value!r}")


def _divide(num, den):
    """num / den row by row for nonnegative features: 0 where a row received no attention at all.

    With features >= 0, den = phi(q).sum_j phi(k_j) is 0 only if every term is, and then num is 0
    too, so clamping den to the smallest positive float turns 0 / 0 into 0 and changes nothing else.
    """
    if (den < 0).any():  # den has one value per query: a cheap check next to num
        raise ValueError("kernelized attention: a normaliser phi(q).sum phi(k) is negative; "
                         "the feature map must return nonnegative features")
    # in place: num is always a fresh product here, and a large new tensor costs page faults
    return num.div_(den.clamp_min(torch.finfo(den.dtype).tiny).unsqueeze(-1))


# ----------------------------------------------------------------------------- feature maps
def elu_plus_one(x, is_query=True):
    """phi(x) = elu(x) + 1, positive everywhere (Katharopoulos et al. 2020)."""
    return F.elu(x).add_(1)  # in place: one pass less over (..., n, d); elu's gradient uses x, not this


def relu_features(x, is_query=True):
    """phi(x) = max(x, 0): cheap, but a query may see no key at all (its output is then 0)."""
    return F.relu(x)


def gaussian_projection(num_features, dim, *, orthogonal=True, seed=0, dtype=torch.float32):
    """A (num_features, dim) matrix whose rows are N(0, I) vectors.

    With `orthogonal`, rows come in blocks of `dim` exactly orthogonal directions (QR of a
    Gaussian matrix), each row rescaled to the length of an independent Gaussian vector, so that
    every row is still distributed as N(0, I) but the rows within a block are orthogonal.
    """
    _check_positive_int(num_features, "num_features", "gaussian_projection")
    _check_positive_int(dim, "dim", "gaussian_projection")
    gen = torch.Generator().manual_seed(seed)
    if not orthogonal:
        return torch.randn(num_features, dim, generator=gen, dtype=torch.float64).to(dtype)
    blocks = []
    for _ in range(math.ceil(num_features / dim)):
        g = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
        q, r = torch.linalg.qr(g)
        q = q * torch.sign(torch.diagonal(r))  # make the QR factor unique (uniformly random)
        blocks.append(q.T)  # rows are orthonormal directions
    directions = torch.cat(blocks)[:num_features]
    lengths = torch.randn(num_features, dim, generator=gen, dtype=torch.float64).norm(dim=1)
    return (directions * lengths[:, None]).to(dtype)


class FavorPlus:
    """Performer's positive random features for the softmax kernel exp(q.k / sqrt(d)).

    phi(x) = exp(w_i.x' - |x'|^2 / 2) / sqrt(m) for i = 1..m, with x' = x / d^(1/4) and w_i the
    rows of `gaussian_projection`, so that E[phi(q).phi(k)] = exp(q.k / sqrt(d)).
    For stability each query row is divided by its own largest feature, and all keys of a sequence
    (per batch and head) by one common factor, their largest feature. Both cancel in attention's
    normalisation only because each is one constant: the query factor is constant along the row
    of that query's scores, and the key factor must be the same for every key of the sequence.
    Keys split into chunks with a factor of their own would be weighted by different constants;
    `linear_kernel_attention` therefore streams keys through `key_features`, which returns each
    chunk's factor, and rescales its sums to the largest factor of the whole sequence. The key
    factor depends on the whole sequence, so FAVOR+ cannot run token by token in the recurrent form.
    """
    rowwise = False  # all keys of a sequence share one stabiliser, so keys depend on each other

    def __init__(self, dim, num_features=256, *, orthogonal=True, seed=0):
        self.dim, self.num_features = dim, num_features
        self.orthogonal, self.seed = orthogonal, seed
        self.projection = gaussian_projection(num_features, dim, orthogonal=orthogonal, seed=seed)

    def __repr__(self):
        kind = "orthogonal" if self.orthogonal else "iid"
        return f"FavorPlus(dim={self.dim}, num_features={self.num_features}, {kind}, seed={self.seed})"

    def _logits(self, x):
        if x.shape[-1] != self.dim:
            raise ValueError(f"FavorPlus: built for d={self.dim}, got inputs with d={x.shape[-1]}")
        x = x * self.dim ** -0.25
        return x, x @ self.projection.to(device=x.device, dtype=x.dtype).T  # (..., n, m)

    def key_features(self, x):
        """(phi(x) / exp(c), c) for keys x shaped (..., n, d): c, shaped (..., 1, 1), is the largest
        log-feature over all n keys and m features of each sequence (batch and head).

        Features of one sequence's keys taken in chunks are on different scales; multiplying a
        chunk's sums by exp(c_chunk - c_max) puts them all on the scale of the largest c.
        """
        x, logits = self._logits(x)
        logits = logits - (x * x).sum(-1, keepdim=True) / 2
        c = logits.amax(dim=(-2, -1), keepdim=True)
        return torch.exp(logits - c) / math.sqrt(self.num_features), c

    def __call__(self, x, is_query=True):
        if not is_query:
            return self.key_features(x)[0]
        _, logits = self._logits(x)
        # -|x|^2/2 is one constant per query row: it cancels, like the row's max
        return torch.exp(logits - logits.amax(dim=-1, keepdim=True)) / math.sqrt(self.num_features)


# ----------------------------------------------------------------------------- kernelized attention
def quadratic_kernel_attention(q, k, v, feature_map=elu_plus_one, *, causal=False):
    """The O(n^2) order: A = phi(Q) phi(K)^T (masked if causal), rows normalised, times V."""
    _check_qkv(q, k, v, causal=causal, who="quadratic_kernel_attention")
    scores = feature_map(q, is_query=True) @ feature_map(k, is_query=False).transpose(-2, -1)
    if causal:
        n = q.shape[-2]
        scores = scores * torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    return _divide(scores @ v, scores.sum(-1))


def linear_kernel_attention(q, k, v, feature_map=elu_plus_one, *, chunk_size=4096):
    """The O(n) order: phi(Q) (phi(K)^T V) / phi(Q) (sum_j phi(K_j)), never forming n x n.

    Both passes stream over the sequence `chunk_size` tokens at a time: first the keys, adding
    each chunk's phi(K)^T V and sum phi(K) to the two small sums; then the queries, each chunk
    written into the output. The arithmetic is the same as in one pass, but the features of
    only one chunk exist at a time, so they take one chunk's memory whatever n, and memory grows
    only with the output.

    A feature map whose keys share one scale over the sequence (FAVOR+'s key stabiliser) gives
    each chunk's features with that chunk's own scale c (`key_features`); the sums are kept on
    the scale of the largest c seen so far and multiplied by exp(c_old - c_new) when a later chunk
    has a larger one (the running max of `chunked_softmax_attention`), so the result is that of
    one stabiliser for all keys, as in one pass.
    """
    _check_qkv(q, k, v, who="linear_kernel_attention")
    _check_positive_int(chunk_size, "chunk_size", "linear_kernel_attention")
    key_features = getattr(feature_map, "key_features", None)  # FAVOR+: a chunk's features and their scale
    # keys that depend on each other but come with no scale to rescale by: all of them in one chunk
    key_chunk = chunk_size if key_features is not None or getattr(feature_map, "rowwise", True) else max(k.shape[-2], 1)
    kv, z = 0, 0  # sum_j phi(k_j) v_j^T, shaped (..., m, d_v), and sum_j phi(k_j), shaped (..., 1, m)
    top = None  # FAVOR+: the scale of kv and z, the largest c so far, shaped (..., 1, 1)
    for s in range(0, k.shape[-2], key_chunk):
        kc, vc = k[..., s:s + key_chunk, :], v[..., s:s + key_chunk, :]
        if key_features is None:
            fk, scale = feature_map(kc, is_query=False), 1
        else:  # features on this chunk's own scale c: bring the sums and the chunk to the larger one
            fk, c = key_features(kc)
            new = c if top is None else torch.maximum(top, c)
            if top is not None:
                kv, z = kv * torch.exp(top - new), z * torch.exp(top - new)
            scale, top = torch.exp(c - new), new
        kv = kv + (fk.transpose(-2, -1) @ vc) * scale
        z = z + fk.sum(-2, keepdim=True) * scale
    out = q.new_empty(*q.shape[:-1], v.shape[-1])
    for s in range(0, q.shape[-2], chunk_size):
        fq = feature_map(q[..., s:s + chunk_size, :], is_query=True)
        out[..., s:s + chunk_size, :] = _divide(fq @ kv, (fq @ z.transpose(-2, -1)).squeeze(-1))
    return out


def causal_linear_attention(q, k, v, feature_map=elu_plus_one, *, chunk_size=64):
    """Causal linear attention by prefix sums over chunks of `chunk_size` tokens.

    Inside a chunk: the small masked quadratic form. Across chunks: each chunk adds its
    phi(K)^T V and sum phi(K) to a running prefix sum, so only n / chunk_size states are kept
    (a plain per-token prefix sum would keep n of them).
    """
    _check_qkv(q, k, v, causal=True, who="causal_linear_attention")
    _check_positive_int(chunk_size, "chunk_size", "causal_linear_attention")
    fq, fk = feature_map(q, is_query=True), feature_map(k, is_query=False)
    n, c = q.shape[-2], chunk_size
    pad = -n % c  # zero features at the end: later than every real query, so never seen
    if pad:
        fq, fk = F.pad(fq, (0, 0, 0, pad)), F.pad(fk, (0, 0, 0, pad))
        v = F.pad(v, (0, 0, 0, pad))
    chunks = (n + pad) // c
    fq = fq.unflatten(-2, (chunks, c))  # (..., chunks, c, m)
    fk = fk.unflatten(-2, (chunks, c))
    v = v.unflatten(-2, (chunks, c))  # (..., chunks, c, d_v)
    # within each chunk: masked quadratic form on c x c
    local = (fq @ fk.transpose(-2, -1)) * torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    num, den = local @ v, local.sum(-1)
    # across chunks: states of all earlier chunks (exclusive prefix sum)
    kv = fk.transpose(-2, -1) @ v  # (..., chunks, m, d_v)
    z = fk.sum(-2)  # (..., chunks, m)
    kv = torch.cat([torch.zeros_like(kv[..., :1, :, :]), kv[..., :-1, :, :].cumsum(-3)], dim=-3)
    z = torch.cat([torch.zeros_like(z[..., :1, :]), z[..., :-1, :].cumsum(-2)], dim=-2)
    num = num + fq @ kv
    den = den + (fq @ z.unsqueeze(-1)).squeeze(-1)
    out = _divide(num, den).flatten(-3, -2)
    return out[..., :n, :]


class LinearAttentionRNN:
    """Causal linear attention as a recurrent network: the state is S = sum phi(k) v^T, z = sum phi(k).

    `step(q, k, v)` takes one token, shaped (..., 1, d), and costs the same at every position.
    `step(q, k, v, log_decay)` first multiplies the state by a gate exp(log_decay) <= 1: one number
    per head, shaped (..., 1) (RetNet's fixed decay, Mamba-2's data-dependent one), or one per
    feature, shaped (..., 1, m) (GLA's gate on the key dimension). With `normalize=False` the output
    is phi(q).S alone, as in RetNet and GLA, which normalise the output with a layer norm instead.
    """

    def __init__(self, feature_map=elu_plus_one, *, normalize=True):
        if not getattr(feature_map, "rowwise", True):
            raise ValueError(f"LinearAttentionRNN: {feature_map!r} computes key features from the "
                             "whole sequence, so it cannot run one token at a time")
        self.feature_map, self.normalize = feature_map, normalize
        self.s = self.z = None

    def step(self, q, k, v, log_decay=None):
        _check_qkv(q, k, v, who="LinearAttentionRNN.step")
        if q.shape[-2] != 1:
            raise ValueError(f"LinearAttentionRNN.step: one token at a time, got {q.shape[-2]}")
        fq, fk = self.feature_map(q, is_query=True), self.feature_map(k, is_query=False)
        if self.s is None:
            self.s = torch.zeros(*fk.shape[:-2], fk.shape[-1], v.shape[-1], dtype=v.dtype, device=v.device)
            self.z = torch.zeros(*fk.shape[:-2], 1, fk.shape[-1], dtype=v.dtype, device=v.device)
        if log_decay is not None:
            gate = _gate(log_decay, fk, "LinearAttentionRNN.step").exp()
            if gate.dim() == fk.dim():  # one gate per feature, (..., 1, m): rows of S
                self.s, self.z = self.s * gate.transpose(-2, -1), self.z * gate
            else:  # one gate per head, (..., 1)
                self.s, self.z = self.s * gate[..., None], self.z * gate[..., None]
        self.s = self.s + fk.transpose(-2, -1) @ v  # (..., m, d_v)
        self.z = self.z + fk  # (..., 1, m)
        if not self.normalize:
            return fq @ self.s
        return _divide(fq @ self.s, (fq * self.z).sum(-1))


def recurrent_linear_attention(q, k, v, feature_map=elu_plus_one, *, log_decay=None, normalize=True):
    """Causal linear attention token by token with `LinearAttentionRNN` (the RNN view).

    `log_decay`, shaped (..., n) or (..., n, m), gates the state before token t is added (see
    `LinearAttentionRNN.step`); `decayed_linear_attention` computes the same in parallel.
    """
    _check_qkv(q, k, v, causal=True, who="recurrent_linear_attention")
    rnn = LinearAttentionRNN(feature_map, normalize=normalize)
    per_feature = log_decay is not None and log_decay.dim() == q.dim()

    def gate(t):
        if log_decay is None:
            return None
        return log_decay[..., t:t + 1, :] if per_feature else log_decay[..., t:t + 1]
    return torch.cat([rnn.step(q[..., t:t + 1, :], k[..., t:t + 1, :], v[..., t:t + 1, :], gate(t))
                      for t in range(q.shape[-2])], dim=-2)


def _gate(log_decay, fk, who):
    """Check a log-gate against the key features fk (..., n, m): shaped (..., n) or (..., n, m), <= 0."""
    if not isinstance(log_decay, torch.Tensor) or not log_decay.is_floating_point():
        raise TypeError(f"{who}: log_decay must be a floating torch.Tensor, got {type(log_decay).__name__}")
    if log_decay.shape not in (fk.shape[:-1], fk.shape):
        raise ValueError(f"{who}: log_decay must be shaped {tuple(fk.shape[:-1])} (one gate per head and "
                         f"token) or {tuple(fk.shape)} (one per feature), got {tuple(log_decay.shape)}")
    if (log_decay > 0).any():
        raise ValueError(f"{who}: log_decay must be <= 0 (a gate exp(log_decay) in (0, 1]); "
                         f"its largest value is {log_decay.max().item():.3g}")
    return log_decay.to(fk.dtype)


def decayed_linear_attention(q, k, v, log_decay, feature_map=elu_plus_one, *, normalize=True):
    """Causal linear attention with a gated state, in the parallel (masked quadratic) form.

    The recurrence S_t = g_t S_{t-1} + phi(k_t) v_t^T unrolls to weights D_ij = g_{j+1} ... g_i on
    the pair (i, j), j <= i, so y_i = sum_j D_ij phi(q_i).phi(k_j) v_j (divided by the same sum
    without v when `normalize`). log_decay (..., n): one gate per head and token, D = exp(L_i - L_j)
    with L the cumulative sum of the log-gates (RetNet with a constant gate; Mamba-2's
    semiseparable mask with data-dependent ones). log_decay (..., n, m): one gate per feature
    (GLA), D depends on the feature too. O(n^2) memory (O(n^2 m) per feature): the reference form.
    """
    _check_qkv(q, k, v, causal=True, who="decayed_linear_attention")
    fq, fk = feature_map(q, is_query=True), feature_map(k, is_query=False)
    cum = _gate(log_decay, fk, "decayed_linear_attention").cumsum(-2 if log_decay.dim() == fk.dim() else -1)
    n = q.shape[-2]
    future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
    if log_decay.dim() == fk.dim():  # (..., n, n, m): exp(L_if - L_jf), 0 for j > i
        diff = cum[..., :, None, :] - cum[..., None, :, :]
        weights = diff.masked_fill(future[..., None], float("-inf")).exp()
        scores = torch.einsum("...if,...jf,...ijf->...ij", fq, fk, weights)
    else:
        diff = cum[..., :, None] - cum[..., None, :]
        scores = (fq @ fk.transpose(-2, -1)) * diff.masked_fill(future, float("-inf")).exp()
    if not normalize:
        return scores @ v
    return _divide(scores @ v, scores.sum(-1))


def retnet_log_decays(heads):
    """RetNet's fixed per-head decays, gamma_h = 1 - 2^(-5-h) for h = 0..heads-1 (Sun et al. 2023,
    arXiv:2307.08621, sec. 2.2), as log gamma_h."""
    _check_positive_int(heads, "heads", "retnet_log_decays")
    return torch.log1p(-torch.pow(2.0, -5.0 - torch.arange(heads, dtype=torch.float64)))


# ----------------------------------------------------------------------------- exact softmax attention
def naive_softmax_attention(q, k, v, *, causal=False):
    """softmax(Q K^T / sqrt(d)) V with the whole n x n matrix in memory."""
    _check_qkv(q, k, v, causal=causal, who="naive_softmax_attention")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        n = q.shape[-2]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def sdpa(q, k, v, *, causal=False):
    """PyTorch's fused `scaled_dot_product_attention`, the reference and the fast baseline."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def chunked_softmax_attention(q, k, v, *, causal=False, query_chunk=1024, key_chunk=4096):
    """Exact softmax attention in O(query_chunk x key_chunk) extra memory (Rabe & Staats 2021).

    For each chunk of queries, walk over chunks of keys keeping a running max m, the running
    sum of exp(score - m) and the running weighted sum of values; when the max grows, the old
    sums are rescaled by exp(m_old - m_new). Nothing is ever exponentiated above 0, so large
    logits cannot overflow. With `causal`, keys are taken in chunks of min(key_chunk, query_chunk)
    aligned with the query chunks: chunks wholly in a query chunk's past need no mask, the one on
    the diagonal is masked, and those in its future are skipped, so about half the blocks are
    computed. (Key chunks larger than the query chunks would skip little and mask much: a mask
    pass and exp over -inf cost more than the blocks they save.)
    """
    _check_qkv(q, k, v, causal=causal, who="chunked_softmax_attention")
    _check_positive_int(query_chunk, "query_chunk", "chunked_softmax_attention")
    _check_positive_int(key_chunk, "key_chunk", "chunked_softmax_attention")
    n_q, n_k, scale = q.shape[-2], k.shape[-2], 1 / math.sqrt(q.shape[-1])
    if causal:  # key chunks aligned with the query chunks: only the diagonal one needs a mask
        key_chunk = min(key_chunk, query_chunk)
    outputs = []
    for qs in range(0, n_q, query_chunk):
        qc = q[..., qs:qs + query_chunk, :] * scale
        rows = qc.shape[-2]
        m = torch.full((*qc.shape[:-1], 1), float("-inf"), dtype=q.dtype, device=q.device)
        total = torch.zeros_like(m)
        acc = torch.zeros(*qc.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
        for ks in range(0, n_k, key_chunk):
            if causal and ks > qs + rows - 1:
                break  # this key chunk and all later ones lie in the future of every query here
            scores = qc @ k[..., ks:ks + key_chunk, :].transpose(-2, -1)
            if causal and ks + scores.shape[-1] - 1 > qs:  # the chunk crosses the diagonal
                i = torch.arange(qs, qs + rows, device=q.device)[:, None]
                j = torch.arange(ks, ks + scores.shape[-1], device=q.device)[None, :]
                scores = scores.masked_fill(j > i, float("-inf"))
            m_new = torch.maximum(m, scores.amax(-1, keepdim=True))
            shift = torch.where(torch.isinf(m_new), 0.0, m_new)  # rows that saw only masked keys
            p = torch.exp(scores - shift)
            rescale = torch.exp(m - shift)
            total = total * rescale + p.sum(-1, keepdim=True)
            acc = acc * rescale + p @ v[..., ks:ks + key_chunk, :]
            m = m_new
            del scores, p  # free this block's temporaries before the next block allocates its own
        outputs.append(acc / total)
    return torch.cat(outputs, dim=-2)


# ----------------------------------------------------------------------------- generation
class SoftmaxKVCache:
    """Softmax attention for generation: keys and values of past tokens stay in a cache.

    `step(q, k, v)` takes one token shaped (..., 1, d); its cost grows with the number of tokens
    already cached, since the new query attends to all of them.
    """

    def __init__(self, max_len):
        _check_positive_int(max_len, "max_len", "SoftmaxKVCache")
        self.max_len, self.length = max_len, 0
        self.keys = self.values = None

    def step(self, q, k, v):
        _check_qkv(q, k, v, who="SoftmaxKVCache.step")
        if q.shape[-2] != 1:
            raise ValueError(f"SoftmaxKVCache.step: one token at a time, got {q.shape[-2]}")
        if self.length == self.max_len:
            raise ValueError(f"SoftmaxKVCache.step: the cache is full ({self.max_len} tokens)")
        if self.keys is None:  # preallocated, so appending costs no copy of the past
            self.keys = k.new_empty(*k.shape[:-2], self.max_len, k.shape[-1])
            self.values = v.new_empty(*v.shape[:-2], self.max_len, v.shape[-1])
        self.keys[..., self.length, :] = k[..., 0, :]
        self.values[..., self.length, :] = v[..., 0, :]
        self.length += 1
        return F.scaled_dot_product_attention(q, self.keys[..., :self.length, :],
                                              self.values[..., :self.length, :])


def generation_times(n_tokens=4096, *, batch=1, heads=4, dim=64, repeats=3, seed=0, device="cpu",
                     warmup=256):
    """Wall time in ms of each generation step, `LinearAttentionRNN` against `SoftmaxKVCache`.

    Both layers generate the same random q, k, v, each in a pass of its own (interleaved token by
    token, the cache's growing reads share the processor's caches with the recurrent step and slow
    it as t grows), and each step's time is the median over `repeats` generations. Before any timing both generate `warmup` tokens untimed (the first calls
    of a kernel pay for allocations and dispatch caches). Returns a dict kernel -> list of n_tokens times.
    """
    names, times = _generation_passes(n_tokens, batch=batch, heads=heads, dim=dim, repeats=repeats, seed=seed,
                                      device=device, warmup=warmup)
    return {name: times[i].median(dim=0).values.tolist() for i, name in enumerate(names)}


def _generation_passes(n_tokens, *, batch, heads, dim, repeats, seed, device, warmup):
    """`generation_times`' measurement: (kernel names, ms of every step, shaped (kernels, repeats, n_tokens))."""
    _check_positive_int(n_tokens, "n_tokens", "generation_times")
    _check_positive_int(repeats, "repeats", "generation_times")
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(n_tokens, batch, heads, 1, dim, generator=gen).to(device) for _ in range(3))
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    names = ("recurrent linear", "softmax + KV cache")
    times = torch.zeros(len(names), repeats, n_tokens, dtype=torch.float64)
    with torch.no_grad():
        layers = (LinearAttentionRNN(), SoftmaxKVCache(n_tokens))
        for t in range(min(warmup, n_tokens)):
            for layer in layers:
                layer.step(q[t], k[t], v[t])
        for r in range(repeats):
            for i, layer in enumerate((LinearAttentionRNN(), SoftmaxKVCache(n_tokens))):
                for t in range(n_tokens):
                    sync()
                    start = time.perf_counter()
                    layer.step(q[t], k[t], v[t])
                    sync()
                    times[i, r, t] = (time.perf_counter() - start) * 1e3
    return names, times


# ----------------------------------------------------------------------------- inside a transformers model
LINEAR_ATTENTION = "linear_elu"  # the name under which transformers' AttentionInterface knows it


def linear_attention_forward(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0,
                             **kwargs):
    """Causal elu+1 linear attention as a transformers attention function.

    transformers' attention layers (GPT-2's among them) compute q, k, v shaped (batch, heads, n, d)
    and hand them to the function that `config._attn_implementation` names in `AttentionInterface`;
    it returns (output shaped (batch, n, heads, d), attention weights or None). Registered as
    `LINEAR_ATTENTION`: `GPT2LMHeadModel(config)` after `config._attn_implementation = LINEAR_ATTENTION`
    is GPT-2 with every softmax attention replaced. transformers builds no mask for a custom
    function, so `attention_mask` is None; attention is always causal and padding is not masked.
    `scaling` is unused (phi is applied to q and k as they are, as in Katharopoulos et al.).
    With a KV cache (generation), the n_q new queries are the last n_q of the n_k positions.
    With `linear_state`, a dict that the caller passes to the model's forward (transformers hands
    extra keyword arguments down to the attention function), the layer keeps a
    `LinearAttentionRNN` there under its layer index and runs the new tokens through it one at a
    time: no keys are kept at all (`generate_with_state`).
    """
    if attention_mask is not None and attention_mask.dtype == torch.bool and not attention_mask.all():
        raise ValueError("linear_attention_forward: padding masks are not supported (causal only)")
    n_q, n_k = query.shape[-2], key.shape[-2]
    state = kwargs.get("linear_state")
    if state is not None:
        if n_q != n_k:
            raise ValueError("linear_attention_forward: with linear_state, call the model with "
                             "use_cache=False (the state replaces the KV cache)")
        rnn = state.setdefault(module.layer_idx, LinearAttentionRNN())
        out = torch.cat([rnn.step(query[..., t:t + 1, :], key[..., t:t + 1, :], value[..., t:t + 1, :])
                         for t in range(n_q)], dim=-2)
    elif n_q == n_k:
        out = causal_linear_attention(query, key, value)
    else:  # generation with a cache: new query i sits at position n_k - n_q + i
        fq, fk = elu_plus_one(query), elu_plus_one(key)
        scores = (fq @ fk.transpose(-2, -1)).tril(n_k - n_q)
        out = _divide(scores @ value, scores.sum(-1))
    return out.transpose(1, 2), None


def generate_with_state(model, prompt_ids, new_tokens):
    """Greedy generation from a `char_gpt` with `LINEAR_ATTENTION`, by its recurrent state.

    Each call of the model gets one token and its position; every layer adds that token to its
    `LinearAttentionRNN` (S and z per head) and reads out from it, so a step costs the same at
    every position and nothing grows with the text. Returns (all ids, the per-layer states).
    """
    if getattr(model.config, "_attn_implementation", None) != LINEAR_ATTENTION:
        raise ValueError(f"generate_with_state: the model's attention is "
                         f"{model.config._attn_implementation!r}, not {LINEAR_ATTENTION!r}")
    ids = [int(i) for i in prompt_ids]
    _check_positive_int(new_tokens, "new_tokens", "generate_with_state")
    if not ids or len(ids) + new_tokens > model.config.n_positions:
        raise ValueError(f"generate_with_state: needs a prompt and prompt + new tokens <= "
                         f"{model.config.n_positions} positions, got {len(ids)} + {new_tokens}")
    device = next(model.parameters()).device
    state, model = {}, model.eval()
    with torch.no_grad():
        for t in range(len(ids) + new_tokens):
            if t == len(ids):  # past the prompt: the most likely next token
                ids.append(int(logits[0, -1].argmax()))
            logits = model(torch.tensor([[ids[t]]], device=device), position_ids=torch.tensor([[t]], device=device),
                           use_cache=False, linear_state=state).logits
    return ids, state


CACHE_KINDS = ("keys and values", "conv state", "recurrent state")


def cache_numbers(model, n_tokens):
    """How many numbers a transformers model keeps for generation after reading `n_tokens` tokens.

    Runs `model` once on n_tokens token ids (all 0: the shapes do not depend on the text) with
    use_cache=True and sums over layers, by kind: the keys and values of softmax attention's KV cache,
    and the convolution and recurrent states of Mamba's layers. A model built on the meta device
    (weights without values) works too: its cache has shapes and no values. Returns {kind: count}.
    """
    if not isinstance(n_tokens, int) or isinstance(n_tokens, bool) or n_tokens < 1:
        raise ValueError(f"cache_numbers: n_tokens must be a positive int, got {n_tokens!r}")
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(input_ids=torch.zeros(1, n_tokens, dtype=torch.long, device=device), use_cache=True)
    cache = getattr(out, "cache_params", None)
    cache = out.past_key_values if cache is None else cache
    if cache is None:
        raise ValueError(f"cache_numbers: {type(model).__name__} returned no cache with use_cache=True")
    counts = dict.fromkeys(CACHE_KINDS, 0)
    for layer in cache.layers:
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            counts["keys and values"] += tensor.numel() if isinstance(tensor, torch.Tensor) else 0
        for name, kind in (("conv_states", "conv state"), ("recurrent_states", "recurrent state")):
            states = getattr(layer, name, None) or {}
            counts[kind] += sum(t.numel() for t in states.values() if t is not None)
    return counts


def cache_table(models, lengths):
    """`cache_numbers` for every model ({name: model}) at every length, as one table (a row per
    model and length; a column per kind of cache and their total)."""
    import pandas as pd

    rows = [{"model": name, "tokens": n, **cache_numbers(model, n)} for name, model in models.items()
            for n in lengths]
    table = pd.DataFrame(rows)
    table["total"] = table[list(CACHE_KINDS)].sum(axis=1)
    return table


def _register_with_transformers():
    from transformers import AttentionInterface

    AttentionInterface.register(LINEAR_ATTENTION, linear_attention_forward)


_register_with_transformers()


def char_gpt(vocab_size, n_layer=3, d_model=64, n_head=4, block_size=128, *, attention="sdpa", seed=0):
    """Notebook 01's character-level GPT-2 (`utils.scaling.gpt2_config`), with `attention` either
    "sdpa" (softmax) or `LINEAR_ATTENTION` (causal elu+1 linear attention); same seed, same weights."""
    from transformers import GPT2LMHeadModel

    from .scaling import gpt2_config

    if attention not in ("sdpa", "eager", LINEAR_ATTENTION):
        raise ValueError(f"char_gpt: attention must be 'sdpa', 'eager' or {LINEAR_ATTENTION!r}, got {attention!r}")
    config = gpt2_config(n_layer, d_model, n_head, vocab_size=vocab_size, n_positions=block_size,
                         bos_token_id=None, eos_token_id=None)
    config._attn_implementation = attention
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


# (n_layer, d_model, n_head, block_size, batch_size, steps, lr): "cpu" is the notebook's run (about
# 10 s per model on a 2-core CPU); "seeds", that of scripts/linear_attention_quality.py (the same
# models, 10 times the steps, over QUALITY_SEEDS; its record ships in data/linear_attention/), and
# "long", one seed for 2,000 steps
QUALITY_RUNS = {
    "cpu": dict(n_layer=2, d_model=64, n_head=4, block_size=128, batch_size=16, steps=100, lr=3e-3),
    "long": dict(n_layer=2, d_model=64, n_head=4, block_size=128, batch_size=16, steps=2000, lr=3e-3),
    "seeds": dict(n_layer=2, d_model=64, n_head=4, block_size=128, batch_size=16, steps=1000, lr=3e-3),
}
QUALITY_SEEDS = (0, 1, 2)  # the seeds of scripts/linear_attention_quality.py's shipped run


def split_text(text, val_fraction=0.05, test_fraction=0.05):
    """(train, validation, test): the text cut in three in reading order, test last."""
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"split_text: fractions must be in (0, 1) and sum below 1, got "
                         f"{val_fraction} and {test_fraction}")
    a = round(len(text) * (1 - val_fraction - test_fraction))
    b = round(len(text) * (1 - test_fraction))
    return text[:a], text[a:b], text[b:]


def char_ngram_loss(train_text, test_text, order=3, add_k=0.1):
    """Test loss (nats per character) of a character n-gram model with add-k smoothing.

    Each character is predicted from the `order - 1` before it, by counts over `train_text`;
    characters of the test text unseen in training get the smoothed share of an unseen one. The
    simplest strong baseline a character language model has to beat.
    """
    losses = char_ngram_losses(train_text, test_text, order, add_k)
    return math.fsum(losses[order - 1:]) / (len(test_text) - order + 1)


def char_ngram_losses(train_text, test_text, order=3, add_k=0.1):
    """The n-gram's loss (nats) on each character of `test_text`, as a list as long as the text;
    the first `order - 1` characters, which have no full context, get NaN."""
    from collections import Counter

    _check_positive_int(order, "order", "char_ngram_loss")
    if add_k <= 0 or not train_text or len(test_text) < order:
        raise ValueError("char_ngram_loss: needs add_k > 0, a training text and a test text of at least "
                         f"`order` characters (got add_k={add_k}, {len(train_text)}, {len(test_text)})")
    vocab = len(set(train_text) | set(test_text))
    grams = Counter(train_text[i - order + 1:i + 1] for i in range(order - 1, len(train_text)))
    contexts = Counter(train_text[i - order + 1:i] for i in range(order - 1, len(train_text)))
    return [float("nan")] * (order - 1) + [
        -math.log((grams[test_text[i - order + 1:i + 1]] + add_k) / (contexts[test_text[i - order + 1:i]] + add_k * vocab))
        for i in range(order - 1, len(test_text))]


def ngram_window_losses(train_text, test_text, order, block_size, add_k=0.1):
    """The n-gram's mean loss per window of `block_size` characters of `test_text`, over the same
    characters a `CharWindows` model predicts (positions 1 .. block_size - 1 of each window), so that
    the two can be compared window by window. The n-gram's context may reach back across the start of
    a window (its first `order - 2` predictions), which a windowed model cannot; characters without a
    full context (the text's first `order - 1`) are left out."""
    import numpy as np

    _check_positive_int(block_size, "block_size", "ngram_window_losses")
    losses = np.asarray(char_ngram_losses(train_text, test_text, order, add_k))
    n = len(test_text) // block_size
    if n < 1:
        raise ValueError(f"ngram_window_losses: no window of {block_size} characters in {len(test_text)}")
    return np.nanmean(losses[: n * block_size].reshape(n, block_size)[:, 1:], axis=1)


def window_losses(model, windows, batch_size=64):
    """Mean next-character loss (nats) of `model` on each window of a `utils.scaling.CharWindows`,
    as a numpy array; their mean is `utils.scaling.loss_on` (every window has as many targets)."""
    import numpy as np

    device = next(model.parameters()).device
    out = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            ids = windows.windows[start:start + batch_size].to(device)
            logits = model(input_ids=ids).logits[:, :-1]
            loss = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none")
            out.append(loss.view(ids.shape[0], -1).mean(-1).cpu())
    model.train(was_training)
    return np.asarray(torch.cat(out).double())


def compare_attention(text, attentions=("sdpa", LINEAR_ATTENTION), *, n_layer, d_model, n_head,
                      block_size, batch_size, steps, lr, eval_every=None, seed=0, threads=1,
                      progress=False):
    """Train notebook 01's character GPT once per attention on the same data, steps and seed.

    The text is split by `split_text`; each model is trained with the course's `utils.train`,
    scored on the validation windows every `eval_every` steps (history column val_loss), and on
    the test windows once at the end. Returns (results, histories, models): results has one row
    per attention (val_loss, test_loss in nats per character, seconds of training).
    """
    import pandas as pd

    from .scaling import CharWindows, char_vocab, loss_on
    from .training import train

    if not attentions:
        raise ValueError("compare_attention: no attentions given")
    vocab = char_vocab(text)
    parts = [CharWindows(part, vocab, block_size) for part in split_text(text)]
    train_set, val_set, test_set = parts
    rows, histories, models = [], {}, {}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads or old_threads)
    try:
        for attention in attentions:
            model = char_gpt(len(vocab), n_layer, d_model, n_head, block_size, attention=attention, seed=seed)
            history = train(model, train_set, batch_size=batch_size, max_steps=steps, lr=lr,
                            eval_fn=lambda m: {"val_loss": loss_on(m, val_set)}, eval_every=eval_every,
                            seed=seed, progress=progress)
            name = "softmax (sdpa)" if attention == "sdpa" else ("elu+1 linear" if attention == LINEAR_ATTENTION
                                                                 else attention)
            rows.append({"attention": name, "val_loss": history["val_loss"].dropna().iloc[-1],
                         "test_loss": loss_on(model, test_set), "seconds": history["seconds"].iloc[-1]})
            histories[name], models[name] = history, model
    finally:
        torch.set_num_threads(old_threads)
    return pd.DataFrame(rows), histories, models


# ----------------------------------------------------------------------------- FAVOR+ accuracy
def favor_error(q, k, v, num_features, *, orthogonal=True, seed=0):
    """Relative Frobenius error of FAVOR+ attention against exact softmax attention."""
    _check_qkv(q, k, v, who="favor_error")
    exact = naive_softmax_attention(q, k, v)
    approx = linear_kernel_attention(q, k, v, FavorPlus(q.shape[-1], num_features,
                                                        orthogonal=orthogonal, seed=seed))
    return ((approx - exact).norm() / exact.norm()).item()


def uniform_attention_error(q, k, v):
    """Relative Frobenius error of the cheapest answer, the mean of V for every query, against exact softmax.

    With small random logits softmax attention is nearly uniform, so this baseline is hard to beat: an
    approximation of the softmax kernel earns its cost only where its error is below this one.
    """
    _check_qkv(q, k, v, who="uniform_attention_error")
    exact = naive_softmax_attention(q, k, v)
    return ((v.mean(-2, keepdim=True) - exact).norm() / exact.norm()).item()


def planted_keys(q, *, noise=0.3, seed=0):
    """Keys that make attention peaked: key j is a noisy copy of query perm(j), the queries in a random order.

    Every query then has one key much closer to it than all the others, as when a token looks up an
    earlier mention of itself; `noise` is the noise's standard deviation relative to the queries' scale.
    """
    if noise < 0:
        raise ValueError(f"planted_keys: noise must be >= 0, got {noise}")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(q.shape[-2], generator=gen)
    jitter = torch.randn(q.shape, generator=gen, dtype=q.dtype).to(q.device)
    return q[..., perm, :] + noise * q.std() * jitter


def plot_favor_error(errors, *, baseline=None, anchor=256, ax=None, save=None):
    """Median relative error against m, one line per projection, bars from the best to the worst seed.

    `errors` is a DataFrame with columns projection, m, seed, error. The estimator's errors are
    heavy-tailed (one seed can be far off), so median and range describe them better than mean and
    std. The two projections are drawn with their own marker and line style, the second shifted a
    little to the right, so that neither hides the other; a dotted line of slope -1/2 (the
    Monte-Carlo rate) through the first projection's median at m = `anchor` (256 by default, past the
    small m where the error saturates; the largest m if absent) is the yardstick; `baseline`, if given, draws the error
    of the mean of V for every query as a dashed horizontal line.
    """
    import matplotlib.pyplot as plt

    from .plotting import save_figure

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 4.2))
    looks = [("o", "-", 1.0), ("s", "--", 1.12), ("^", "-.", 1.25)]
    for (projection, group), (marker, line, shift) in zip(errors.groupby("projection"), looks):
        stats = group.groupby("m").error.agg(["median", "min", "max"])
        spread = [stats["median"] - stats["min"], stats["max"] - stats["median"]]
        ax.errorbar(stats.index * shift, stats["median"], yerr=spread, marker=marker, ls=line, ms=5,
                    capsize=3, label=f"{projection} projections (median, best-worst seed)")
    m = errors.m.sort_values().unique()
    at = anchor if anchor in m else m[-1]
    first = errors[(errors.m == at) & (errors.projection == errors.projection.iloc[0])].error.median()
    ax.plot(m, first * (m / at) ** -0.5, "k:", lw=1, label=f"Monte-Carlo rate, m^(-1/2), through m = {at}")
    if baseline is not None:  # the error of the mean of V for every query, which needs no features
        ax.axhline(baseline, color="grey", ls="--", lw=1.2, label="mean of V for every query (no features)")
    ax.set(xscale="log", yscale="log", xlabel="random features m",
           ylabel="relative Frobenius error, ||FAVOR+ - exact|| / ||exact||",
           title=f"FAVOR+ error over {errors.seed.nunique()} seeds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if save:
        save_figure(fig, save)
    return ax


def plot_quality(history, *, baseline=None, ax=None, title=None):
    """Validation loss against training step, one line (own marker and style) per attention.

    `history` has columns step, val_loss, attention (rows without val_loss are skipped), and
    optionally seed: then each line is the mean over seeds, with a band from the lowest to the
    highest seed. `baseline` an optional (label, loss) drawn as a grey horizontal line.
    """
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 3.8))
    history = history.dropna(subset=["val_loss"])
    seeds = history.seed.nunique() if "seed" in history else 1
    for (name, group), (marker, line) in zip(history.groupby("attention"), [("o", "-"), ("s", "--"), ("^", "-.")]):
        stats = group.groupby("step").val_loss.agg(["mean", "min", "max"])
        label = name if seeds == 1 else f"{name} (mean of {seeds} seeds, band: range)"
        (drawn,) = ax.plot(stats.index, stats["mean"], marker=marker, ls=line, ms=4, label=label)
        if seeds > 1:
            ax.fill_between(stats.index, stats["min"], stats["max"], color=drawn.get_color(), alpha=0.2, lw=0)
    if baseline is not None:
        ax.axhline(baseline[1], color="grey", lw=1, ls=":", label=baseline[0])
    ax.set(xlabel="training step", ylabel="validation loss (nats per character)", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return ax


QUALITY_GROUP = 8  # test windows of 128 characters resampled in runs of 8 (1,024 characters of running text)


def quality_seeds(record):
    """The shipped multi-seed record as a table: per attention, validation and test loss over seeds
    (`utils.evaluation.over_seeds`: mean ± std, range), and the n-gram chosen on validation, scored on
    the same test split (its validation and test loss)."""
    import pandas as pd

    from . import evaluation as ev

    results = pd.DataFrame(record["results"])
    rows = [{"model": name, "validation loss": str(ev.over_seeds(g.val_loss)), "test loss": str(ev.over_seeds(g.test_loss)),
             "test mean": g.test_loss.mean()} for name, g in results.groupby("attention", sort=False)]
    chosen = record["ngram_chosen_on_validation"]
    base = record["baselines"][chosen]
    rows.append({"model": f"{chosen} (chosen on validation)", "validation loss": f"{base['val_loss']:.3f}",
                 "test loss": f"{base['test_loss']:.3f}", "test mean": base["test_loss"]})
    return pd.DataFrame(rows)


def quality_comparisons(record, group=QUALITY_GROUP):
    """Paired comparisons on the same test windows (`utils.evaluation.paired_bootstrap`, resampling runs
    of `group` consecutive windows, with its sign-flip p-value): elu+1 linear minus softmax for each
    seed and for the loss averaged over seeds, and each attention (averaged over seeds) minus the n-gram
    chosen on validation. Returns {label: Comparison}."""
    import numpy as np

    from . import evaluation as ev

    losses = {name: np.asarray(per_seed) for name, per_seed in record["test_windows"]["losses"].items()}
    ngram = np.asarray(record["test_windows"]["ngram"]["losses"])
    groups = np.arange(len(ngram)) // group
    soft, lin = losses["softmax (sdpa)"], losses["elu+1 linear"]
    out = {f"linear - softmax, seed {s}": ev.paired_bootstrap(lin[i], soft[i], groups=groups)
           for i, s in enumerate(record["seeds"])}
    out["linear - softmax, mean of seeds"] = ev.paired_bootstrap(lin.mean(0), soft.mean(0), groups=groups)
    order = record["test_windows"]["ngram"]["order"]
    for name, per_seed in losses.items():
        out[f"{name} - {order}, mean of seeds"] = ev.paired_bootstrap(per_seed.mean(0), ngram, groups=groups)
    return out


# ----------------------------------------------------------------------------- benchmark suite
BENCH_SHAPE = {"batch": 1, "heads": 4, "dim": 64}  # one sequence, 4 heads of GPT-2's head size 64
FAVOR_FEATURES = 256
MEMORY_N = 16384
GENERATION_TOKENS, GENERATION_WINDOW = 4096, 256

_BENCH_FAVOR = FavorPlus(BENCH_SHAPE["dim"], FAVOR_FEATURES, seed=0)

# kernel -> (function of q, k, v, pattern, largest n timed by default, largest with --long)
KERNELS = {
    "naive": (naive_softmax_attention, "full", 4096, 8192),
    "sdpa": (sdpa, "full", 16384, 16384),
    "sdpa causal": (lambda q, k, v: sdpa(q, k, v, causal=True), "causal", 8192, 16384),
    "chunked exact": (chunked_softmax_attention, "full", 8192, 16384),
    "chunked exact causal": (lambda q, k, v: chunked_softmax_attention(q, k, v, causal=True),
                             "causal", 8192, 16384),
    "linear": (linear_kernel_attention, "full", 32768, 131072),
    "causal linear": (causal_linear_attention, "causal", 32768, 131072),
    "favor+": (lambda q, k, v: linear_kernel_attention(q, k, v, _BENCH_FAVOR), "full", 32768, 131072),
}


# the notebook's shorter sweep: largest n per kernel
NOTEBOOK_TOPS = {"naive": 4096, "sdpa": 4096, "sdpa causal": 4096, "chunked exact": 4096,
                 "chunked exact causal": 4096, "linear": 16384, "causal linear": 16384, "favor+": 8192}


def bench_sizes(long=False):
    """Sequence lengths of the sweep: 256 to 32k by default, to 128k with --long."""
    top = 131072 if long else 32768
    return [2 ** p for p in range(8, int(math.log2(top)) + 1)]


def fit_slope(n, ms):
    """Slope of the least-squares line through (log n, log ms): the exponent of n."""
    n, ms = torch.tensor(n, dtype=torch.float64), torch.tensor(ms, dtype=torch.float64)
    if len(n) < 2:
        raise ValueError("fit_slope: needs at least two points")
    x, y = n.log(), ms.log()
    x = x - x.mean()
    return ((x * (y - y.mean())).sum() / (x * x).sum()).item()


def slopes(records, column="ms", from_n=2048):
    """Per kernel, the log-log slope of `column` against n fitted from `from_n` up (`fit_slope`), from a
    DataFrame with columns kernel, n and `column` (one row per kernel and n); kernels with fewer than two
    lengths from `from_n` up are left out. Returns a pandas Series indexed by kernel."""
    import pandas as pd

    return pd.Series({kernel: fit_slope(g[g.n >= from_n].n.tolist(), g[g.n >= from_n][column].tolist())
                      for kernel, g in records.groupby("kernel") if (g.n >= from_n).sum() >= 2}, dtype=float)


def crossover_n(n, slow_ms, fast_ms):
    """Smallest n from which `fast` stays faster than `slow`, interpolated in log-log.

    Returns None if `fast` is never faster at the largest n, and n[0] if it is faster everywhere.
    """
    ratio = [math.log(s / f) for s, f in zip(slow_ms, fast_ms)]
    if ratio[-1] <= 0:
        return None
    i = len(ratio) - 1
    while i > 0 and ratio[i - 1] > 0:
        i -= 1
    if i == 0:
        return n[0]
    x0, x1 = math.log(n[i - 1]), math.log(n[i])
    return math.exp(x0 + (x1 - x0) * -ratio[i - 1] / (ratio[i] - ratio[i - 1]))


def _measure(fn, q, k, v, *, device, time_it=True, budget_ms=200, most_repeats=25, least_repeats=3):
    """(median ms, peak MiB) of fn(q, k, v) without autograd.

    The profiled call for the peak memory doubles as warm-up; then timed calls follow until about
    `budget_ms` are spent, `least_repeats` to `most_repeats` of them, so that the median of a cheap
    kernel rests on many calls and a burst of load on a shared machine moves it little, while a kernel
    slower than the budget is called `least_repeats` times.
    """
    def call():
        with torch.no_grad():
            fn(q, k, v)
    mib = peak_mib(call, device=device)
    if not time_it:
        return None, mib
    ms = []
    while len(ms) < most_repeats and (len(ms) < least_repeats or sum(ms) < budget_ms):
        start = time.perf_counter()
        call()
        _sync()
        ms.append((time.perf_counter() - start) * 1e3)
    return statistics.median(ms), mib


def sweep(sizes, tops, *, device="cpu", budget_ms=200, least_repeats=3, seed=0):
    """Records of time and peak memory of each kernel in `tops` (name -> largest n) over `sizes`; each time
    the median of `least_repeats` or more calls within about `budget_ms` (`_measure`)."""
    unknown = set(tops) - set(KERNELS)
    if unknown:
        raise ValueError(f"sweep: unknown kernels {sorted(unknown)}; known: {sorted(KERNELS)}")
    b, h, d = BENCH_SHAPE["batch"], BENCH_SHAPE["heads"], BENCH_SHAPE["dim"]
    gen = torch.Generator().manual_seed(seed)
    for n in sizes:
        q, k, v = (torch.randn(b, h, n, d, generator=gen).to(device) for _ in range(3))
        for kernel, top in tops.items():
            if n <= top:
                fn, pattern = KERNELS[kernel][:2]
                ms, mib = _measure(fn, q, k, v, device=device, budget_ms=budget_ms, least_repeats=least_repeats)
                yield {"suite": "linear", "kernel": kernel, "pattern": pattern, "n": n,
                       "ms": ms, "peak_mib": mib, "density": None}
        del q, k, v


def sweep_repeats(sizes, tops, *, repeats=3, device="cpu", budget_ms=200, least_repeats=3):
    """`sweep` run `repeats` times in turn (column repeat), each on fresh inputs of the same sizes, so
    that a burst of load on the machine hits one repeat and shows as spread between repeats instead
    of moving the one number there is."""
    _check_positive_int(repeats, "repeats", "sweep_repeats")
    for r in range(repeats):
        for record in sweep(sizes, tops, device=device, budget_ms=budget_ms, least_repeats=least_repeats, seed=r):
            yield {**record, "repeat": r}


def causal_block_share(n, *, query_chunk=1024, key_chunk=4096):
    """Share of the n x n (query, key) pairs for which `chunked_softmax_attention(causal=True)` computes a
    score: whole blocks of query_chunk x min(key_chunk, query_chunk), up to and including the one on the
    diagonal of each query chunk (the masked half of that block is computed, then discarded)."""
    _check_positive_int(n, "n", "causal_block_share")
    key_chunk = min(key_chunk, query_chunk)
    done = 0
    for qs in range(0, n, query_chunk):
        rows = min(query_chunk, n - qs)
        done += rows * min(n, ((qs + rows - 1) // key_chunk + 1) * key_chunk)
    return done / n ** 2


def causal_skip_times(sizes, *, query_chunk=1024, repeat=3, seed=0):
    """Chunked exact attention, causal against bidirectional with the same blocks (query_chunk x query_chunk,
    the causal kernel's), called in turn `repeat` times on one sequence of BENCH_SHAPE after one untimed call of
    each: what the causal kernel saves by skipping blocks, apart from the block size. One record per n with the
    share of blocks computed, each form's median ms, and the median, lowest and highest ratio causal /
    bidirectional of the pairs of calls, and the MiB each form faulted in per call.

    Why a masked block can cost more than its share of work: the causal form masks each diagonal block with
    `masked_fill`, which returns a new block-sized tensor (16 MiB for four heads at 1024 x 1024 in float32) beside
    the scores, so the masked block allocates one temporary more than an unmasked one; fresh pages for it (see
    `block_size_times`) would show in its faults. It also makes passes over the block that an unmasked one does not
    (the comparison that builds the mask, the copy in `masked_fill`), which cost time even without fresh pages."""
    b, h, d = BENCH_SHAPE["batch"], BENCH_SHAPE["heads"], BENCH_SHAPE["dim"]
    gen = torch.Generator().manual_seed(seed)
    for n in sizes:
        q, k, v = (torch.randn(b, h, n, d, generator=gen) for _ in range(3))
        ratios, mib, (causal, full) = _paired_calls(
            lambda: chunked_softmax_attention(q, k, v, causal=True, query_chunk=query_chunk),
            lambda: chunked_softmax_attention(q, k, v, query_chunk=query_chunk, key_chunk=query_chunk), repeat)
        yield {"n": n, "share of blocks computed": causal_block_share(n, query_chunk=query_chunk),
               "bidirectional ms": full, "causal ms": causal, "causal / bidirectional": ratios[len(ratios) // 2],
               "lowest": ratios[0], "highest": ratios[-1], "MiB faulted in per call, causal": mib[0],
               "MiB faulted in per call, bidirectional": mib[1]}


def repeat_summary(records, from_n=2048):
    """From `sweep_repeats` records (a DataFrame): per kernel, the time slope fitted on each repeat
    from `from_n` up (median, min and max over repeats), and the largest relative spread of one
    point, (max - min) / median over the repeats at the same n. Kernels with fewer than two sizes
    from `from_n` up get no slope."""
    import pandas as pd

    rows = {}
    for kernel, g in records.groupby("kernel"):
        spread = g.groupby("n").ms.agg(lambda x: (x.max() - x.min()) / x.median()).max()
        fits = [fit_slope(r[r.n >= from_n].n.tolist(), r[r.n >= from_n].ms.tolist())
                for _, r in g.groupby("repeat") if (r.n >= from_n).sum() >= 2]
        row = {"largest spread of a point": spread}
        if fits:
            s = pd.Series(fits)
            row.update({"slope median": s.median(), "slope min": s.min(), "slope max": s.max()})
        rows[kernel] = row
    return pd.DataFrame(rows).T


def per_token_rise(records, kernels, from_n):
    """From `sweep_repeats` records (a DataFrame): each kernel's time per token at every length from
    `from_n` up over the length before it (the fastest repeat of each), beside how far the repeats of
    those two points disagree, (max - min) / median, the larger of the two; then, at every such length,
    which kernels rise by more than that, which rise within it and which do not rise. Returns the reading
    as lines of text."""
    fastest = records.groupby(["kernel", "n"]).ms.min()
    spread = records.groupby(["kernel", "n"]).ms.agg(lambda x: (x.max() - x.min()) / x.median())
    lines, beyond, within, falling = [], [], [], []
    for kernel in kernels:
        ns = sorted(fastest[kernel].index)
        steps = []
        for before, n in zip(ns, ns[1:]):
            if n < from_n:
                continue
            rise = (fastest[kernel, n] / n) / (fastest[kernel, before] / before)
            noise = max(spread[kernel, n], spread[kernel, before])
            steps.append(f"{rise:.2f} at {n} (repeats within {noise:.2f})")
            (beyond if rise - 1 > noise else within if rise > 1 else falling).append(f"{kernel} at {n}")
        lines.append(f"{kernel}: " + ", ".join(steps))
    lines.append(f"rising by more than their repeats disagree: {', '.join(beyond) or 'none'}; "
                 f"rising within that: {', '.join(within) or 'none'}; not rising: {', '.join(falling) or 'none'}")
    return "time per token, over the length before:\n" + "\n".join(lines)


def _paired_calls(first, second, repeat):
    """`first()` and `second()` called in turn `repeat` times after one untimed call of each, without autograd:
    the ratio first / second of each pair of calls (sorted), the MiB each call faulted in, on average (minor
    page faults, pages the OS had to map in, times the page size; Linux and macOS), and each call's median ms."""
    import resource

    def minflt():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    calls, ratios, faults, times = (first, second), [], [0, 0], ([], [])
    with torch.no_grad():
        for call in calls:
            call()
        for _ in range(repeat):
            ms = []
            for i, call in enumerate(calls):
                start, before = time.perf_counter(), minflt()
                call()
                ms.append(time.perf_counter() - start)
                faults[i] += minflt() - before
                times[i].append(ms[-1] * 1e3)
            ratios.append(ms[0] / ms[1])
    mib = [f * resource.getpagesize() / 2**20 / repeat for f in faults]
    return sorted(ratios), mib, [statistics.median(t) for t in times]


def _paired_record(n, label, first, second, ratios, mib):
    return {"n": n, f"{label}, median": ratios[len(ratios) // 2], "lowest": ratios[0], "highest": ratios[-1],
            f"MiB faulted in per call, {first}": mib[0], f"MiB faulted in per call, {second}": mib[1]}


def block_size_times(sizes, *, large=4096, small=1024, repeat=5, seed=0):
    """Bidirectional chunked exact attention with keys in blocks of `large` against blocks of `small` (queries
    in chunks of `small` for both), called in turn on the same BENCH_SHAPE inputs after one untimed call of
    each: one record per n with the ratio large / small of each repeat's pair of calls, so that a machine
    that slows down during the run weighs on both alike, and the MiB each block size faulted in per call.

    Why fresh pages can follow the block size: a block of scores for four heads takes 16 MiB with 1024 keys,
    32 MiB with 2048 and 64 MiB with 4096. glibc's malloc serves a request above its mmap threshold with a
    fresh mapping and unmaps it when it is freed; by default it raises that threshold to the size of such a
    block once freed, but no higher than 32 MiB on 64-bit systems. Below the threshold a freed block goes
    back to the heap, whose top glibc trims (returns to the operating system) once more than the trim
    threshold lies free there. Either way the next call may get pages the OS has to fault in one by one;
    whether it does depends on the process's history, which is why the faults are counted in the very calls
    that are timed (`man mallopt`: M_MMAP_THRESHOLD, M_TRIM_THRESHOLD)."""
    b, h, d = BENCH_SHAPE["batch"], BENCH_SHAPE["heads"], BENCH_SHAPE["dim"]
    gen = torch.Generator().manual_seed(seed)
    for n in sizes:
        q, k, v = (torch.randn(b, h, n, d, generator=gen) for _ in range(3))
        ratios, mib, _ = _paired_calls(lambda: chunked_softmax_attention(q, k, v, query_chunk=small, key_chunk=large),
                                       lambda: chunked_softmax_attention(q, k, v, query_chunk=small, key_chunk=small),
                                       repeat)
        yield {"score block MiB": h * small * min(large, n) * 4 / 2**20,
               **_paired_record(n, f"{large}-key / {small}-key blocks", f"{large}-key", f"{small}-key", ratios, mib)}


def favor_chunk_times(n=8192, *, chunk=4096, repeat=3, seed=0):
    """FAVOR+ (the benchmark's feature map) through `linear_kernel_attention` on one BENCH_SHAPE sequence of n
    tokens, in chunks of `chunk` tokens against one chunk of all n, called in turn after one untimed call of
    each: one record with the ratio chunked / one chunk of each pair of calls and the MiB each faulted in per call."""
    b, h, d = BENCH_SHAPE["batch"], BENCH_SHAPE["heads"], BENCH_SHAPE["dim"]
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=gen) for _ in range(3))
    parts = -(-n // chunk)
    ratios, mib, _ = _paired_calls(lambda: linear_kernel_attention(q, k, v, _BENCH_FAVOR, chunk_size=chunk),
                                   lambda: linear_kernel_attention(q, k, v, _BENCH_FAVOR, chunk_size=n), repeat)
    return [_paired_record(n, f"{parts} chunks / one chunk", f"{parts} chunks", "one chunk", ratios, mib)]


def length_times(kernel, short, long, *, repeat=3, seed=0):
    """One kernel of KERNELS (as the sweep calls it) on one BENCH_SHAPE sequence of `long` tokens and on its
    first `short` tokens, called in turn after one untimed call of each, so that load on the machine weighs on
    both lengths alike: one record with the time per token at `long` over that at `short` for each pair of
    calls (1 for a kernel whose time grows like n), the median ms of each length and the MiB each faulted in
    per call. Set beside the sweep's two points of the same kernel, it separates growth that belongs to the
    kernel (both show it) from the sweep's own conditions (only the sweep shows it)."""
    fn = KERNELS[kernel][0]
    b, h, d = BENCH_SHAPE["batch"], BENCH_SHAPE["heads"], BENCH_SHAPE["dim"]
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, long, d, generator=gen) for _ in range(3))
    qs, ks, vs = (x[..., :short, :].contiguous() for x in (q, k, v))
    ratios, mib, ms = _paired_calls(lambda: fn(q, k, v), lambda: fn(qs, ks, vs), repeat)
    ratios = [r * short / long for r in ratios]
    return [{**_paired_record(long, f"per token, {long} / {short}", str(long), str(short), ratios, mib),
             f"ms at {short}": ms[1], f"ms at {long}": ms[0]}]


def block_size_reading(blocks, tight=0.1, first="the larger blocks"):
    """From `block_size_times` records (a DataFrame): at each n, whether the larger blocks (`first`) cost more,
    cost less, make no difference beyond a bound, or whether this run cannot say. They cost more (less) when
    the median ratio's distance from 1 exceeds the paired ratios' range (highest - lowest); they make no
    difference beyond r when every ratio lies within 1 +- r, with r = the largest distance of a ratio from 1
    and r <= `tight`. Otherwise the run cannot say. With the records' faults, each line adds the MiB both
    calls faulted in, and a last line says whether fresh pages follow the cost: at every length with a verdict,
    `first` faults in more (fewer) pages, by over 10% and 1 MiB, exactly where it costs more (less).
    Returns the reading as lines of text."""
    median = [c for c in blocks.columns if c.endswith("median")][0]
    faulted = [c for c in blocks.columns if c.startswith("MiB faulted in per call, ")]
    lines, pairs = [], []
    for _, row in blocks.iterrows():
        effect, spread = row[median] - 1, row["highest"] - row["lowest"]
        bound = max(abs(row["highest"] - 1), abs(row["lowest"] - 1))
        cost = 1 if effect > spread else -1 if -effect > spread else 0 if bound <= tight else None
        verdict = {1: f"{first} cost more", -1: f"{first} cost less", 0: f"no difference beyond {bound:.0%}",
                   None: "cannot say: the repeats disagree more than the effect"}[cost]
        line = f"at {int(row.n)} tokens: {row[median]:.2f}x (repeats {row.lowest:.2f} to {row.highest:.2f}); {verdict}"
        if faulted:
            a, b = row[faulted[0]], row[faulted[1]]
            line += f"; faulted in per call: {a:.0f} MiB against {b:.0f} MiB"
            pages = 1 if a - b > max(1, 0.1 * b) else -1 if b - a > max(1, 0.1 * a) else 0
            pairs.append((int(row.n), pages, cost))
        lines.append(line)
    if pairs:
        words = {1: "more", -1: "fewer", 0: "as many"}
        costs = {1: "dearer", -1: "cheaper", 0: "no dearer", None: "cost unclear"}
        judged = [(pages, cost) for _, pages, cost in pairs if cost is not None]
        follow = bool(judged) and all(pages == cost for pages, cost in judged)
        lines.append(f"fresh pages against the cost, {first}: "
                     + "; ".join(f"at {n}, {words[p]} pages and {costs[c]}" for n, p, c in pairs)
                     + (": the pages follow the cost at every length with a verdict" if follow else
                        ": the pages do not follow the cost at every length with a verdict" if judged else ": no cost to compare"))
    return "\n".join(lines)


def memory_records(sizes, kernels=("naive", "chunked exact", "sdpa"), *, device="cpu", seed=0):
    """Peak memory (MiB) torch allocates for one call of each kernel on one head (B = 1, d = 64), beside
    the size of the n x n float32 score matrix that a plain implementation stores."""
    unknown = set(kernels) - set(KERNELS)
    if unknown:
        raise ValueError(f"memory_records: unknown kernels {sorted(unknown)}; known: {sorted(KERNELS)}")
    gen = torch.Generator().manual_seed(seed)
    d = BENCH_SHAPE["dim"]
    for n in sizes:
        q, k, v = (torch.randn(1, 1, n, d, generator=gen).to(device) for _ in range(3))
        for kernel in kernels:
            _, mib = _measure(KERNELS[kernel][0], q, k, v, device=device, time_it=False)
            yield {"kernel": kernel, "n": n, "peak_mib": mib, "scores_mib": n * n * 4 / 2**20}
        del q, k, v


def generation_records(tokens, *, device="cpu", repeats=3, window=GENERATION_WINDOW, passes=False):
    """Per-token generation times as records: the median step over each window of `window` tokens
    (each step the median of its `repeats` passes), recorded at the window's centre (n = the token in
    its middle). With `passes`, each record also carries `passes_ms`, the window's median step in each
    pass on its own: how far the passes of one window disagree."""
    _check_positive_int(window, "window", "generation_records")
    b, h, d = BENCH_SHAPE["batch"], BENCH_SHAPE["heads"], BENCH_SHAPE["dim"]
    names, times = _generation_passes(tokens, batch=b, heads=h, dim=d, repeats=repeats, seed=0, device=device,
                                      warmup=256)
    for i, kernel in enumerate(names):
        steps = times[i].median(dim=0).values
        for t in range(window, tokens + 1, window):
            record = {"suite": "linear", "kernel": kernel, "pattern": "generation", "n": t - window // 2,
                      "ms": steps[t - window:t].sort().values[window // 2].item(), "peak_mib": None, "density": None}
            if passes:
                record["passes_ms"] = times[i, :, t - window:t].sort(dim=-1).values[:, window // 2].tolist()
            yield record


def _theil_sen(x, y):
    """Median of the slopes between every two points: a line that one outlying point cannot tilt."""
    pairs = [(y[j] - y[i]) / (x[j] - x[i]) for i in range(len(x)) for j in range(i + 1, len(x)) if x[j] != x[i]]
    return float(torch.tensor(pairs, dtype=torch.float64).median()) if pairs else float("nan")


def pass_crossovers(records):
    """From `generation_records` with `passes_ms` (a DataFrame): for each pass on its own, the token t from
    which the recurrent step stays the cheaper one (None where it never does)."""
    runs = records.dropna(subset=["passes_ms"])
    per_pass = runs.pivot(index="n", columns="kernel", values="passes_ms").sort_index()
    t = per_pass.index.tolist()
    return [crossover_n(t, [p[i] for p in per_pass["softmax + KV cache"]], [p[i] for p in per_pass["recurrent linear"]])
            for i in range(len(per_pass.iloc[0, 0]))]


def generation_summary(records):
    """From `generation_records` (a DataFrame): per kernel, the cost of a step in the first window, in
    the median of the others and in the last, and its growth in microseconds per 1,000 tokens (the
    median of the slopes between every two windows, so that one outlying window cannot set it); where
    the records carry `passes_ms`, the spread of the passes, (max - min) / median, in the first window
    and the largest in the others. Also the token t from which the recurrent step stays the cheaper one
    (None if never in the range) and a reading of the run in words: how often the two curves cross,
    in how many windows before the last crossing the cached step is the cheaper one, and whether each
    first window departs from its kernel's trend line (the Theil-Sen slope, through the median intercept of
    the other windows) by more than the passes of one window disagree: a warm-up that the untimed tokens
    did not absorb would show there, while a step that grows with t by design, as the cached one does, would not.
    With `passes_ms`, also the crossover of each pass on its own.
    Returns (DataFrame indexed by kernel, crossover t, reading)."""
    import pandas as pd

    steps = records.pivot(index="n", columns="kernel", values="ms").sort_index()
    t = steps.index.tolist()
    spread = None
    if "passes_ms" in records:
        runs = records.dropna(subset=["passes_ms"])
        spread = runs.assign(spread=[(max(p) - min(p)) / sorted(p)[len(p) // 2] for p in runs.passes_ms])
        spread = spread.pivot(index="n", columns="kernel", values="spread").sort_index()
    rows, lines = {}, []
    for kernel in steps:
        ms = steps[kernel].tolist()
        rest = float(pd.Series(ms[1:]).median())
        rows[kernel] = {"first window ms": ms[0], "median of the others ms": rest, "last window ms": ms[-1],
                        "growth us per 1k tokens": _theil_sen(t, ms) * 1e6}
        if spread is not None:
            first, others = spread[kernel].iloc[0], spread[kernel].iloc[1:].max()
            rows[kernel].update({"passes' spread, first window": first, "passes' spread, others (largest)": others})
            slope = rows[kernel]["growth us per 1k tokens"] / 1e6  # the first window against the kernel's own trend,
            trend = float(pd.Series([m - slope * x for x, m in zip(t[1:], ms[1:])]).median()) + slope * t[0]
            above = ms[0] / trend - 1  # so that a step that grows with t by design is not read as warm-up
            lines.append(f"{kernel}: first window {ms[0] / trend:.2f}x its trend line there (fitted to the others), a gap "
                         + ("larger than" if abs(above) > others else "within")
                         + f" the spread of the passes in any later window (up to {others:.0%})")
    cross = None
    if {"recurrent linear", "softmax + KV cache"} <= set(steps):
        cached, recurrent = steps["softmax + KV cache"], steps["recurrent linear"]
        cross = crossover_n(t, cached.tolist(), recurrent.tolist())
        cheaper = (cached < recurrent).tolist()
        flips = sum(a != b for a, b in zip(cheaper, cheaper[1:]))
        below = [c for n, c in zip(t, cheaper) if cross is not None and n < cross]
        lines.insert(0, f"the two curves cross {flips} time{'s' * (flips != 1)}" + (
            f"; before t ~ {cross:.0f} the cached step is the cheaper one in {sum(below)} of {len(below)} windows"
            if below else ""))
        if spread is not None:
            crossings = ["never" if c is None else f"{c:.0f}" for c in pass_crossovers(records)]
            lines.insert(1, "the recurrent step is the cheaper one from t ~ " + ", ".join(crossings) + " in each pass on its own")
    return pd.DataFrame(rows).T, cross, "\n".join(lines)


@register("linear")
def run(long=False):
    """Time and peak memory of every kernel over n; peak memory at 16k; per-token generation times."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tops = {kernel: (top_long if long else top) for kernel, (_, _, top, top_long) in KERNELS.items()}
    yield from sweep(bench_sizes(long), tops, device=device)
    # peak memory at n = 16384 on one head: the naive n x n matrix of 4 heads would need 8 GiB
    gen = torch.Generator().manual_seed(1)
    b, d = BENCH_SHAPE["batch"], BENCH_SHAPE["dim"]
    q, k, v = (torch.randn(b, 1, MEMORY_N, d, generator=gen).to(device) for _ in range(3))
    for kernel in ("naive", "chunked exact"):
        _, mib = _measure(KERNELS[kernel][0], q, k, v, device=device, time_it=False)
        yield {"suite": "linear", "kernel": kernel, "pattern": "full, 1 head", "n": MEMORY_N,
               "ms": None, "peak_mib": mib, "density": None}
    del q, k, v
    yield from generation_records(4 * GENERATION_TOKENS if long else GENERATION_TOKENS, device=device)


def bar_report(df):
    """Four numbers that sum up one run of the suite (a DataFrame of its records): linear
    attention's time exponent, SDPA's time over linear attention's at 16k, the memory the chunked
    exact kernel saves, and how much a recurrent generation step grows from the first window to the last."""
    def value(kernel, pattern, n, field):
        rows = df[(df.kernel == kernel) & (df.pattern == pattern) & (df.n == n)]
        if rows.empty:
            raise ValueError(f"bar_report: no record for {kernel!r} ({pattern}) at n={n}")
        return float(rows.iloc[0][field])

    lin = df[(df.kernel == "linear") & (df.n >= 2048) & (df.n <= 32768)]
    gen = df[(df.kernel == "recurrent linear") & (df.pattern == "generation")].sort_values("n")
    return {
        "linear: slope of log ms over log n, n in [2k, 32k]": fit_slope(lin.n.tolist(), lin.ms.tolist()),
        "SDPA ms / linear ms at n=16384": value("sdpa", "full", 16384, "ms") / value("linear", "full", 16384, "ms"),
        "naive / chunked exact peak MiB at n=16384": (
            value("naive", "full, 1 head", MEMORY_N, "peak_mib")
            / value("chunked exact", "full, 1 head", MEMORY_N, "peak_mib")),
        "recurrent generation: last / first token ms": float(gen.ms.iloc[-1] / gen.ms.iloc[0]),
    }
