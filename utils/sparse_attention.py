"""Sparse attention patterns, four kernels that apply them, and the ``sparse`` benchmark suite.

A pattern is a function ``mask_mod(b, h, q_idx, kv_idx) -> bool tensor``: True where query ``q_idx`` may
attend key ``kv_idx`` (the convention of ``torch.nn.attention.flex_attention`` and of attention-gym).
Our patterns use only elementwise operations and indexing, so one function serves both FlexAttention,
which calls it on scalars, and ``dense_mask``, which calls it on broadcast index grids. Compose them with
``or_masks`` and ``and_masks``. Numeric parameters live in 0-d tensors, so a compiled FlexAttention kernel
is reused when only their values change. Patterns never depend on the batch index.

Rule for fully masked rows: a query that may attend no key at all gets an output of zeros (no NaN), in
every kernel here, as torch's SDPA and FlexAttention also do.
"""

import functools
import math
import numbers
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, and_masks, flex_attention, or_masks

from utils.benchmarks import on_threads, paired_ratios, peak_mib, register, time_rounds

__all__ = [
    "BLOCK_SIZE", "and_masks", "or_masks",
    "band", "dilated", "global_tokens", "random_keys", "block_local", "lookup", "blockwise", "full",
    "longformer", "bigbird", "bigbird_uses_full_attention", "star_transformer", "etc", "atomic_patterns", "compounds",
    "causal", "sliding_window", "chunked_causal", "sink_tokens", "kv_cache_mib", "kv_cache_per_token", "layer_windows",
    "density_table", "bigbird_random_blocks", "tiny_bigbird", "kernel_summary", "round_verdict", "notebook_summary",
    "longformer_value_check", "bigbird_eval_value_check", "weighted_reference_attention", "lsh_buckets", "same_bucket", "bucket_attention_reference",
    "top_k_blocks", "needle_selection", "sdpa_causal_work", "time_windows", "compare_of_ideal", "share_trend", "flex_skipping", "reach", "attention_io", "sparse_transformer", "sparse_transformer_reference",
    "linformer_attention", "pooling_projection", "linformer_error",
    "dense_mask", "block_table", "partial_share", "token_density", "block_density", "tiles", "tile_states", "show_tiles", "plot_speedup",
    "longformer_attended",
    "reference_attention", "naive_attention", "sdpa_attention", "flex_sparse_attention",
    "block_sparse_attention", "block_sparse_memory", "KERNELS", "benchmark_patterns", "benchmark", "window_reading",
    "flex_verdicts",
]

BLOCK_SIZE = 128  # the tile a kernel skips or computes: FlexAttention's default block


def _check_int(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------------------
# The five atomic patterns
# ---------------------------------------------------------------------------------------------------------
def band(window):
    """Sliding window: query i attends key j when |i - j| <= window (``window`` keys on each side)."""
    w = torch.tensor(_check_int("window", window))

    def band_mask(b, h, q_idx, kv_idx):
        return (q_idx - kv_idx).abs() <= w

    return band_mask


def dilated(window, dilation):
    """Dilated window: keys at most ``window`` away whose distance is a multiple of ``dilation``."""
    w = torch.tensor(_check_int("window", window))
    d = torch.tensor(_check_int("dilation", dilation, 1))

    def dilated_mask(b, h, q_idx, kv_idx):
        distance = (q_idx - kv_idx).abs()
        return (distance <= w) & (distance % d == 0)

    return dilated_mask


def global_tokens(*positions):
    """Global attention: the tokens at ``positions`` attend every key, and every query attends them."""
    if not positions:
        raise ValueError("global_tokens needs at least one position")
    pos = [torch.tensor(_check_int("position", p)) for p in sorted(set(positions))]

    def global_mask(b, h, q_idx, kv_idx):
        hit = (q_idx == pos[0]) | (kv_idx == pos[0])
        for p in pos[1:]:
            hit = hit | (q_idx == p) | (kv_idx == p)
        return hit

    return global_mask


def lookup(table):
    """A pattern read from a boolean table, shape (n, n) or (heads, n, n): True where the query attends."""
    if not isinstance(table, torch.Tensor) or table.dtype != torch.bool or table.dim() not in (2, 3):
        raise ValueError("lookup needs a bool tensor of shape (n, n) or (heads, n, n)")
    if table.shape[-1] != table.shape[-2]:
        raise ValueError(f"lookup needs a square table, got shape {tuple(table.shape)}")
    if table.dim() == 2 or table.shape[0] == 1:
        shared = table.reshape(table.shape[-2:])

        def lookup_mask(b, h, q_idx, kv_idx):
            return shared[q_idx, kv_idx]

        return lookup_mask

    flat = table.flatten()  # one axis: fewer symbolic sizes for torch.compile
    n = torch.tensor(table.shape[-1])

    def per_head_lookup_mask(b, h, q_idx, kv_idx):
        return flat[(h * n + q_idx) * n + kv_idx]

    return per_head_lookup_mask


def random_keys(n, keys_per_query, *, seed=0, heads=1, exclude=None, device=None):
    """Random attention: each query of a length-``n`` sequence attends ``keys_per_query`` keys drawn
    uniformly without replacement (a different draw per head), among the keys that the pattern ``exclude``
    does not already cover (fewer when fewer are left). Reproducible from ``seed``."""
    n = _check_int("n", n, 1)
    k = _check_int("keys_per_query", keys_per_query)
    heads = _check_int("heads", heads, 1)
    if k > n:
        raise ValueError(f"keys_per_query={k} is more than the n={n} keys there are")
    generator = torch.Generator().manual_seed(_check_int("seed", seed))
    table = torch.zeros(heads, n, n, dtype=torch.bool)
    rows_per_chunk = max(1, 2**22 // (heads * n))
    for start in range(0, n, rows_per_chunk):
        stop = min(n, start + rows_per_chunk)
        scores = torch.rand(heads, stop - start, n, generator=generator)
        if exclude is not None:
            scores.masked_fill_(_evaluate(exclude, torch.arange(start, stop), n, heads, "cpu"), -1.0)
        top, idx = scores.topk(k, dim=-1)
        table[:, start:stop].scatter_(-1, idx, top >= 0)  # excluded keys (score -1) only when too few are left
    return lookup(table.to(device) if device is not None else table)


def block_local(block_size):
    """Block-local attention: the sequence is cut into blocks and a query attends the keys of its block."""
    size = torch.tensor(_check_int("block_size", block_size, 1))

    def block_local_mask(b, h, q_idx, kv_idx):
        return q_idx // size == kv_idx // size

    return block_local_mask


def blockwise(pattern, block_size):
    """Lift a pattern from tokens to blocks: query i attends key j when block i // size attends block j // size."""
    size = torch.tensor(_check_int("block_size", block_size, 1))

    def blockwise_mask(b, h, q_idx, kv_idx):
        return pattern(b, h, q_idx // size, kv_idx // size)

    return blockwise_mask


def full():
    """Dense attention: every query attends every key."""

    def full_mask(b, h, q_idx, kv_idx):
        return (q_idx >= 0) & (kv_idx >= 0)

    return full_mask


# ---------------------------------------------------------------------------------------------------------
# Patterns of decoders since the book: causal windows, sinks, and the KV cache they need
# ---------------------------------------------------------------------------------------------------------
def causal():
    """Causal attention: query i attends key j when j <= i."""

    def causal_mask(b, h, q_idx, kv_idx):
        return kv_idx <= q_idx

    return causal_mask


def sliding_window(window):
    """Causal sliding window (Mistral 7B, Gemma 2's local layers): query i attends the ``window`` keys
    i - window + 1 .. i, itself included (transformers' ``sliding_window_causal_mask_function``)."""
    w = torch.tensor(_check_int("window", window, 1))

    def sliding_window_mask(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx < w)

    return sliding_window_mask


def chunked_causal(chunk):
    """Llama 4's chunked attention: causal attention inside consecutive chunks of ``chunk`` tokens, nothing across."""
    c = torch.tensor(_check_int("chunk", chunk, 1))

    def chunked_causal_mask(b, h, q_idx, kv_idx):
        same = torch.div(q_idx, c, rounding_mode="floor") == torch.div(kv_idx, c, rounding_mode="floor")
        return (kv_idx <= q_idx) & same

    return chunked_causal_mask


def sink_tokens(count):
    """Attention sinks (StreamingLLM, Xiao et al. 2023): every query attends the first ``count`` keys.
    Combine with a causal pattern: ``or_masks(sliding_window(w), and_masks(causal(), sink_tokens(4)))``."""
    c = torch.tensor(_check_int("count", count, 1))

    def sink_mask(b, h, q_idx, kv_idx):
        return kv_idx < c

    return sink_mask


def kv_cache_mib(tokens, *, layers, kv_heads=None, head_dim=None, latent_dim=None, windows=None, bytes_per_value=2):
    """MiB of keys and values a decoder keeps after ``tokens`` tokens. ``kv_heads`` x ``head_dim`` keys and as many
    values per layer and position (multi-head, grouped-query or multi-query attention), or, for multi-head latent
    attention, one vector of ``latent_dim`` values (see ``kv_cache_per_token``). ``windows`` gives each layer's
    sliding window (None for a global layer; one value for all layers): a windowed layer keeps a rolling
    cache of its last ``window`` positions only."""
    tokens, layers = _check_int("tokens", tokens), _check_int("layers", layers, 1)
    windows = [windows] * layers if windows is None or isinstance(windows, numbers.Integral) else list(windows)
    if len(windows) != layers:
        raise ValueError(f"windows must give one window per layer ({layers}), got {len(windows)}")
    kept = sum(tokens if w is None else min(tokens, _check_int("window", w, 1)) for w in windows)
    per_position = kv_cache_per_token(layers=1, kv_heads=kv_heads, head_dim=head_dim, latent_dim=latent_dim,
                                      bytes_per_value=bytes_per_value)
    return kept * per_position / 2**20


# ---------------------------------------------------------------------------------------------------------
# Compounds
# ---------------------------------------------------------------------------------------------------------
def longformer(window, global_positions):
    """Longformer (Beltagy et al. 2020): a band of ``window`` keys on each side plus global tokens.
    transformers' ``attention_window`` is the two-sided width, so it corresponds to ``window = attention_window // 2``."""
    return or_masks(band(window), global_tokens(*global_positions))


def star_transformer(relay=0):
    """Star-Transformer (Guo et al. 2019): each token sees its two neighbours (a band of 3) and one relay token."""
    return or_masks(band(1), global_tokens(relay))


def etc(window, global_count):
    """ETC's global-local attention (Ainslie et al. 2020) drawn on one axis: the first ``global_count`` positions
    stand for ETC's separate global input (they see everything and are seen by everything), the rest for the
    long input, whose tokens see a band of ``window`` keys on each side plus every global token."""
    return or_masks(band(window), global_tokens(*range(_check_int("global_count", global_count, 1))))


def bigbird_uses_full_attention(n, block_size, num_random_blocks):
    """transformers' BigBirdModel switches to full attention when n <= (5 + 2 r) * block_size."""
    return n <= (5 + 2 * num_random_blocks) * block_size


def bigbird(n, block_size=64, num_random_blocks=3, *, seed=0, heads=1, random_blocks=None,
            full_when_short=True, device=None):
    """BigBird's ITC pattern (Zaheer et al. 2020) on blocks of ``block_size`` tokens, as transformers runs it:
    the first and last blocks are global, each block sees its neighbour blocks (a band of 3 blocks), and
    ``num_random_blocks`` random blocks per query block and head, drawn outside window and global blocks.
    ``random_blocks`` (bool, (heads, n_blocks, n_blocks)) replaces the draw with given random blocks.
    With ``full_when_short`` it is full attention when the model would fall back to it (see
    ``bigbird_uses_full_attention``)."""
    n = _check_int("n", n, 1)
    block_size = _check_int("block_size", block_size, 1)
    r = _check_int("num_random_blocks", num_random_blocks)
    if full_when_short and bigbird_uses_full_attention(n, block_size, r):
        return full()
    n_blocks = -(-n // block_size)
    window_and_global = or_masks(band(1), global_tokens(0, n_blocks - 1))
    if random_blocks is None:
        random = random_keys(n_blocks, min(r, n_blocks), seed=seed, heads=heads, exclude=window_and_global,
                             device=device)
    else:
        if tuple(random_blocks.shape[-2:]) != (n_blocks, n_blocks):
            raise ValueError(f"random_blocks must end in ({n_blocks}, {n_blocks}), got {tuple(random_blocks.shape)}")
        random = lookup(random_blocks.to(device) if device is not None else random_blocks)
    return blockwise(or_masks(window_and_global, random), block_size)


def atomic_patterns(n=64, seed=0):
    """The five atomic patterns with parameters that read well at length ``n`` (for figures), each named with its
    parameters: the global positions, window w on each side, dilation d, r random keys per query, blocks of b."""
    w, wd, r, b = max(1, n // 32), max(2, n // 8), max(1, n // 16), max(1, n // 8)
    return {
        f"global at 0, {n // 2}": global_tokens(0, n // 2),
        f"band w={w}": band(w),
        f"dilated w={wd} d=2": dilated(wd, 2),
        f"random r={r}": random_keys(n, r, seed=seed),
        f"block-local b={b}": block_local(b),
    }


def compounds(n=64, seed=0):
    """The compound patterns at length ``n`` (for figures)."""
    return {
        "Star-Transformer": star_transformer(0),
        "Longformer": longformer(max(1, n // 16), [0, n // 2]),
        "ETC": etc(max(1, n // 16), max(1, n // 16)),
        "BigBird": bigbird(n, max(1, n // 16), 1, seed=seed),
    }


# ---------------------------------------------------------------------------------------------------------
# Evaluating a pattern: dense masks, block tables, densities
# ---------------------------------------------------------------------------------------------------------
def _evaluate(mask_mod, rows, n, heads, device):
    """The pattern on query rows ``rows`` and all n keys: bool (1 or heads, len(rows), n)."""
    b = torch.zeros((), dtype=torch.long, device=device)
    h = torch.arange(heads, device=device).view(heads, 1, 1)
    q = rows.to(device).view(1, -1, 1)
    kv = torch.arange(n, device=device).view(1, 1, n)
    m = mask_mod(b, h, q, kv)
    if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
        raise TypeError(f"pattern {getattr(mask_mod, '__name__', mask_mod)!r} must return a bool tensor")
    shape = torch.broadcast_shapes(m.shape, (1, len(rows), n))
    if len(shape) != 3 or shape[0] not in (1, heads):
        raise ValueError(f"pattern {getattr(mask_mod, '__name__', mask_mod)!r} gave a mask of shape {tuple(shape)}")
    return m.expand(shape)


def _row_chunks(n, heads, multiple=1):
    rows = max(multiple, (2**24 // (heads * n)) // multiple * multiple)
    return [torch.arange(s, min(n, s + rows)) for s in range(0, n, rows)]


def _check_n_heads(n, heads):
    return _check_int("n", n, 1), _check_int("heads", heads, 1)


@functools.lru_cache(maxsize=4)
def dense_mask(mask_mod, n, *, heads=1, device="cpu"):
    """The pattern as a bool tensor (1 or heads, n, n); the first dimension is 1 when it ignores the head."""
    n, heads = _check_n_heads(n, heads)
    parts = [_evaluate(mask_mod, rows, n, heads, device) for rows in _row_chunks(n, heads)]
    width = max(p.shape[0] for p in parts)
    return torch.cat([p.expand(width, -1, -1) for p in parts], dim=1)


@functools.lru_cache(maxsize=32)
def block_table(mask_mod, n, *, heads=1, block_size=BLOCK_SIZE, device="cpu"):
    """Which block_size x block_size tiles the pattern touches: (any, full), two bool tensors of shape
    (1 or heads, n_blocks, n_blocks). A tile is computed when ``any`` is True; a ``full`` tile needs no mask.
    Tiles that stick out past n (when n is not a multiple of block_size) are never full."""
    n, heads = _check_n_heads(n, heads)
    bs = _check_int("block_size", block_size, 1)
    n_blocks = -(-n // bs)
    anys, fulls = [], []
    for rows in _row_chunks(n, heads, multiple=bs):
        m = _evaluate(mask_mod, rows, n, heads, device)
        m = F.pad(m, (0, n_blocks * bs - n, 0, -len(rows) % bs))  # pad with False to whole tiles
        tiles = m.view(m.shape[0], -1, bs, n_blocks, bs)
        anys.append(tiles.any(dim=4).any(dim=2))
        fulls.append(tiles.all(dim=4).all(dim=2))
    width = max(a.shape[0] for a in anys)
    return (torch.cat([a.expand(width, -1, -1) for a in anys], dim=1),
            torch.cat([f.expand(width, -1, -1) for f in fulls], dim=1))


def partial_share(mask_mod, n, *, heads=1, block_size=BLOCK_SIZE):
    """Of the tiles a block-sparse kernel computes (over all heads), the share that are partial: those where it must
    evaluate the mask. 0 when every kept tile is full, 1 when none is."""
    anys, fulls = block_table(mask_mod, n, heads=heads, block_size=block_size)
    return (anys & ~fulls).sum().item() / max(anys.sum().item(), 1)


def token_density(mask_mod, n, *, heads=1):
    """Fraction of the n x n (query, key) pairs the pattern allows (mean over heads)."""
    n, heads = _check_n_heads(n, heads)
    total = sum(_evaluate(mask_mod, rows, n, heads, "cpu").float().sum(dim=(1, 2)).mean().item()
                for rows in _row_chunks(n, heads))
    return total / (n * n)


def block_density(mask_mod, n, *, heads=1, block_size=BLOCK_SIZE, device="cpu"):
    """Fraction of block_size x block_size tiles a block-sparse kernel computes (mean over heads)."""
    anys, _ = block_table(mask_mod, n, heads=heads, block_size=block_size, device=device)
    return anys.float().mean().item()


def tile_states(mask_mod, n, *, head=0, block_size=BLOCK_SIZE):
    """Per block_size x block_size tile of one head: 0 skipped (no pair allowed), 1 partial (needs the mask),
    2 full (every pair allowed): an int tensor (n_blocks, n_blocks)."""
    anys, fulls = block_table(mask_mod, n, heads=head + 1, block_size=block_size)
    anys, fulls = anys[min(head, anys.shape[0] - 1)], fulls[min(head, fulls.shape[0] - 1)]
    return anys.long() + fulls.long()


def show_tiles(patterns, n, *, block_size=BLOCK_SIZE, ncols=None, size=3.0, save=None):
    """What a block-sparse kernel does with each tile of each pattern (a dict name -> mask_mod) at length n:
    the allowed pairs in blue, tiles skipped (white), partial (orange frame) and full (green frame)."""
    import matplotlib.patches as patches
    from matplotlib.lines import Line2D

    from utils.plotting import _finish, _grid

    if not patterns:
        raise ValueError("show_tiles: no patterns given")
    fig, axes = _grid(len(patterns), ncols, size)
    colours = {1: "tab:orange", 2: "tab:green"}
    for ax, (name, pattern) in zip(axes, patterns.items()):
        states = tile_states(pattern, n, block_size=block_size)
        ax.imshow(dense_mask(pattern, n)[0], cmap="Blues", vmin=0, vmax=1.3, interpolation="nearest")
        for (i, j), state in zip(torch.cartesian_prod(*[torch.arange(len(states))] * 2).tolist(), states.flatten().tolist()):
            if state:
                ax.add_patch(patches.Rectangle((j * block_size - 0.5, i * block_size - 0.5), block_size, block_size,
                                               fill=False, edgecolor=colours[state], linewidth=1.2))
        counts = [(states == s).sum().item() for s in (0, 1, 2)]
        ax.set_title(f"{name}\n{counts[0]} skipped, {counts[1]} partial, {counts[2]} full", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_xlabel("key", fontsize=8), ax.set_ylabel("query", fontsize=8)
    fig.legend([Line2D([], [], color=c, lw=2) for c in colours.values()],
               [f"partial {block_size}x{block_size} tile (mask applied)", "full tile (no mask)"],
               loc="upper center", ncol=2, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout()
    return _finish(fig, save)


def plot_speedup(results, *, n=None, ax=None, save=None):
    """Measured speedup over dense SDPA against the ideal 1 / (fraction of tiles computed), one marker per
    pattern and one colour per kernel, from the records of ``benchmark`` at length ``n`` (default: the largest).
    When the records hold two numbers of threads (``benchmark(..., threads=1)`` concatenated with a default run),
    the runs on one thread are drawn hollow beside the filled ones; each speedup is over dense SDPA on the same
    number of threads."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from utils.plotting import _finish, _new_axes

    if "threads" not in results:
        results = results.assign(threads=torch.get_num_threads())
    df = results[(results.pattern != "none") & results.kernel.isin(["flex", "block_sparse", "sdpa_mask", "naive"])]
    n = df.n.max() if n is None else n
    df = df[df.n == n].assign(ideal=lambda d: 1 / d.density)
    if df.empty:
        raise ValueError(f"plot_speedup: no sparse records at n={n}")
    most = int(df.threads.max())
    fig, ax = _new_axes(ax, figsize=(8.4, 4.4))
    line = [1.0, df.ideal.max() * 1.08]  # from dense (every tile) to just past the sparsest pattern drawn
    ax.plot(line, line, color="grey", linestyle="--", label="ideal: 1 / tile density")
    markers = dict(zip(df.pattern.unique(), "osD^vP*"))
    colours = dict(zip(df.kernel.unique(), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    spread = {"speedup_low", "speedup_high"} <= set(df.columns) and df.speedup_low.notna().any()
    # kernels (and thread counts) side by side around each pattern's ideal (a small shift on the log axis),
    # so no marker hides another
    slots = list(df.groupby(["kernel", "threads"], sort=False).groups)
    shift = {slot: 1.045 ** (i - (len(slots) - 1) / 2) for i, slot in enumerate(slots)}

    def draw(x, rows, colour, marker, hollow, size):
        ax.scatter(x, rows.speedup, marker=marker, s=size, zorder=3, linewidths=1.5,
                   facecolors="white" if hollow else colour, edgecolors=colour)
        if spread:  # the lowest and highest of the paired rounds behind each median
            ax.vlines(x, rows.speedup_low, rows.speedup_high, color=colour, linewidth=1.5, zorder=2,
                      linestyles=":" if hollow else "-")

    for (kernel, threads, pattern), row in df.groupby(["kernel", "threads", "pattern"], sort=False):
        draw(row.ideal * shift[(kernel, threads)], row, colours[kernel], markers[pattern], threads < most, 55)
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=k) for k, c in colours.items()]
    # pattern markers in the legend are solid grey: hollow markers mean one thread, not a pattern
    handles += [plt.Line2D([], [], color="grey", marker=m, linestyle="", label=p) for p, m in markers.items()]
    flex_dense = results[(results.kernel == "flex") & (results.pattern == "none") & (results.n == n)]
    colour = colours.get("flex", "black")
    for threads, rows in flex_dense.groupby("threads"):  # FlexAttention computing every tile, at x = 1
        draw([1.0] * len(rows), rows, colour, "X", threads < most, 70)
    if len(flex_dense):
        handles.append(plt.Line2D([], [], color=colour, marker="X", linestyle="", label="flex, every tile (dense)"))
    if spread:
        handles.append(plt.Line2D([], [], color="black", linewidth=1.5, label="lowest to highest round"))
    if df.threads.nunique() > 1:
        handles += [plt.Line2D([], [], color="black", marker="o", linestyle="", label=f"{most} threads (filled)"),
                    plt.Line2D([], [], color="black", marker="o", linestyle=":", fillstyle="none",
                               label="1 thread (hollow, dotted)")]
    parity = ax.axhline(1.0, color="grey", linestyle=":", linewidth=1, label="1: as fast as dense SDPA")
    ax.legend(handles=[ax.get_lines()[0], parity, *handles], fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_xscale("log"), ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers on the log axes
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if round(value, 6) in (2, 3, 5, 0.2, 0.3, 0.5) else ""))
    ax.set_xlabel("ideal speedup = 1 / fraction of 128x128 tiles computed\n(kernels shifted slightly sideways)")
    ax.set_ylabel("measured speedup over dense SDPA\n" + (f"(both{_on_threads_text(most)})" if df.threads.nunique() == 1
                                                          else "(on the same number of threads)"))
    ax.set_title(f"n = {n}: speedup against the ideal")
    _finish(fig, save)
    return ax


def tiles(mask, block_size):
    """Which block_size x block_size tiles of a dense bool mask (..., n, n) hold any True: (..., n_blocks, n_blocks)."""
    bs = _check_int("block_size", block_size, 1)
    n = mask.shape[-1]
    n_blocks = -(-n // bs)
    padded = F.pad(mask, (0, n_blocks * bs - n, 0, n_blocks * bs - mask.shape[-2]))
    return padded.unflatten(-1, (n_blocks, bs)).unflatten(-3, (n_blocks, bs)).any(dim=-1).any(dim=-2)


def longformer_attended(attentions, global_attentions, global_attention_mask):
    """The (batch, heads, n, n) bool mask of the pairs a transformers LongformerModel layer attended, read
    from its outputs: ``attentions`` (batch, heads, n, x + w + 1) holds, per query, the weights on the x
    global tokens and then on the keys at offsets -w/2 .. w/2; ``global_attentions`` (batch, heads, n', x)
    the weights of each global query on every key (n' >= n: the model pads to a multiple of w)."""
    batch, heads, n, width = attentions.shape
    x = 0 if global_attentions is None else global_attentions.shape[-1]
    half = (width - x - 1) // 2
    keys = torch.arange(n)[:, None] + torch.arange(-half, half + 1)  # key of each window slot, (n, w + 1)
    inside = (keys >= 0) & (keys < n)
    counts = torch.zeros(batch, heads, n, n)
    slots = keys.clamp(0, n - 1).expand(batch, heads, n, -1)
    counts.scatter_add_(-1, slots, ((attentions[..., x:] > 0) & inside).float())
    attended = counts > 0
    for b in range(batch):
        for g, p in enumerate(global_attention_mask[b].nonzero()[:, 0].tolist()):
            attended[b, :, :, p] |= attentions[b, :, :, g] > 0  # every query on global key p
            attended[b, :, p, :] = global_attentions[b, :, :n, g] > 0  # global query p on every key
    return attended


# ---------------------------------------------------------------------------------------------------------
# Kernels: (q, k, v, mask_mod) -> output, q, k, v of shape (batch, heads, n, head_dim)
# ---------------------------------------------------------------------------------------------------------
def _check_qkv(q, k, v, mask_mod):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor of shape (batch, heads, n, head_dim)")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"q, k, v must have one shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not callable(mask_mod):
        raise TypeError(f"mask_mod must be a pattern function (b, h, q_idx, kv_idx) -> bool, got {mask_mod!r}")
    return q.shape


def reference_attention(q, k, v, mask):
    """Dense softmax attention in float64 with a bool mask broadcastable to (batch, heads, n, n)."""
    q64, k64, v64 = q.double(), k.double(), v.double()
    scores = q64 @ k64.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    weights = torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)  # fully masked rows give zeros
    return (weights @ v64).to(q.dtype)


def naive_attention(q, k, v, mask_mod):
    """(1) Materialise all n x n scores, mask them, softmax: the memory the patterns promise to save."""
    _, heads, n, d = _check_qkv(q, k, v, mask_mod)
    mask = dense_mask(mask_mod, n, heads=heads, device=str(q.device))
    scores = (q @ k.transpose(-1, -2)).mul_(1 / math.sqrt(d)).masked_fill_(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num_(0.0)  # a row of -inf becomes NaN: make it 0
    return weights @ v


def sdpa_attention(q, k, v, mask_mod):
    """(2) torch's scaled_dot_product_attention with the pattern as a dense bool mask, shaped (1, 1 or heads, n, n):
    SDPA's fused CPU kernel takes a mask of two or four dimensions only (``check_attn_mask_shape`` in
    aten/src/ATen/native/transformers/sdp_utils_cpp.h); one of three dimensions would send it to the math path,
    which materialises the n x n scores. SDPA converts the bool mask to a float one (-inf where masked) first."""
    _, heads, n, _ = _check_qkv(q, k, v, mask_mod)
    mask = dense_mask(mask_mod, n, heads=heads, device=str(q.device))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None])


@functools.cache
def _compiled_flex(dynamic=True):
    # Each new pattern function is one more compiled variant of flex_attention. Past dynamo's limit of 8
    # variants per function it would silently run flex_attention uncompiled, which holds all n x n scores.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(flex_attention, dynamic=dynamic)


# Patterns whose kernel torch 2.13 fails to build with dynamic shapes on the CPU: its C++ template renames
# a size symbol by plain text replacement ("ks1" also hits "ks14"), which breaks once a kernel has more than
# ten symbolic sizes. Those patterns get a kernel compiled for their exact shapes instead.
_STATIC_ONLY = set()


@functools.lru_cache(maxsize=32)
def to_block_mask(mask_mod, n, *, heads=1, block_size=BLOCK_SIZE, device="cpu"):
    """The FlexAttention BlockMask of a pattern, built from ``block_table`` one row of tiles at a time
    (create_block_mask would hold the whole n x n mask in memory at once)."""
    anys, fulls = block_table(mask_mod, n, heads=heads, block_size=block_size, device=device)
    partial = anys & ~fulls

    def ordered(blocks):  # per row of tiles: how many to compute, and which (FlexAttention's format)
        count = blocks.sum(dim=-1, dtype=torch.int32)
        index = torch.argsort(blocks.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)
        return count[None].contiguous(), index[None].contiguous()

    return BlockMask.from_kv_blocks(*ordered(partial), *ordered(fulls), BLOCK_SIZE=block_size,
                                    mask_mod=mask_mod, seq_lengths=(n, n))


def flex_sparse_attention(q, k, v, mask_mod):
    """(3) FlexAttention compiled with torch.compile, skipping the tiles the BlockMask leaves out."""
    _, heads, n, _ = _check_qkv(q, k, v, mask_mod)
    block_mask = to_block_mask(mask_mod, n, heads=heads, device=str(q.device))
    if mask_mod not in _STATIC_ONLY:
        try:
            return _compiled_flex(dynamic=True)(q, k, v, block_mask=block_mask)
        except Exception as error:  # torch._inductor.exc.InductorError
            if q.device.type != "cpu" or "SplitSize" not in str(error):
                raise
            _STATIC_ONLY.add(mask_mod)
    return _compiled_flex(dynamic=False)(q, k, v, block_mask=block_mask)


def _progression(x):
    """(start, step) when the 1-D tensor x is start, start + step, start + 2 step, ... (step >= 1), else None."""
    step = int(x[1] - x[0]) if len(x) > 1 else 1
    if step >= 1 and torch.equal(x, x[0] + step * torch.arange(len(x), device=x.device)):
        return int(x[0]), step
    return None


@functools.lru_cache(maxsize=32)
def _gather_plan(mask_mod, n, heads, block_size, device):
    """How ``block_sparse_attention`` computes a pattern: the query tiles grouped by how many key tiles K they
    need, one fused SDPA call per group. Per group a dict with
    ``q_block`` (G,) and ``kv_block`` (G, K): tile rows, of the tile axis, or of the flattened (head, tile) axis
    when heads differ; ``slide``: ((q start, q step), (kv start, kv step)) when query tile g needs the K
    consecutive key tiles from kv start + g * kv step, so that both can be strided views instead of copies
    (a band), else None; ``bias``: the bool mask of the pairs allowed inside those tiles, shape
    (1, G or 1, block_size, K * block_size), None when every pair is allowed; ``dead``: the query rows that
    may attend nothing, None when there are none. Also returns whether every query tile is in a group."""
    anys, _ = block_table(mask_mod, n, heads=heads, block_size=block_size, device=device)
    shared = anys.shape[0] == 1  # one pattern for every head
    n_blocks = anys.shape[-1]
    counts = anys.sum(dim=-1)
    offsets = torch.arange(block_size, device=device)
    b = torch.zeros((), dtype=torch.long, device=device)
    groups = []
    for K in counts.unique().tolist():
        if K == 0:
            continue  # query tiles that see nothing keep their zero output
        head, q_block = (counts == K).nonzero(as_tuple=True)
        kv_block = anys[head, q_block].nonzero()[:, 1].view(-1, K)
        q_pos = q_block[:, None] * block_size + offsets  # (G, bs)
        kv_pos = (kv_block[:, :, None] * block_size + offsets).flatten(1)  # (G, K * bs)
        allowed = mask_mod(b, head[:, None, None], q_pos.clamp(max=n - 1)[:, :, None],
                           kv_pos.clamp(max=n - 1)[:, None, :]) & (kv_pos < n)[:, None, :]
        allowed = allowed.expand(len(q_block), block_size, K * block_size)
        dead = ~allowed.any(dim=-1, keepdim=True)
        bias = None
        if not allowed.all():
            if (allowed == allowed[:1]).all():
                allowed = allowed[:1]  # the same inside every query tile (a band): broadcast it
            bias = allowed.contiguous()[None]  # bool here; an additive float mask when it is used
        if not shared:  # rows of the flattened (head, tile) axis
            q_block, kv_block = head * n_blocks + q_block, head[:, None] * n_blocks + kv_block
        slide = None
        q_run, kv_run = _progression(q_block), _progression(kv_block[:, 0])
        if q_run and kv_run and torch.equal(kv_block, kv_block[:, :1] + torch.arange(K, device=device)):
            slide = (q_run, kv_run)
        dead = dead if dead.any() else None
        # gathered key tiles are copies: take at most about 256 tiles of them at a time (less memory, warm caches)
        chunk = len(q_block) if slide is not None else max(1, 256 // K)
        for start in range(0, len(q_block), chunk):
            part = slice(start, start + chunk)
            groups.append({"q_block": q_block[part], "kv_block": kv_block[part], "slide": slide,
                           "bias": bias if bias is None or bias.shape[1] == 1 else bias[:, part],
                           "dead": None if dead is None or not dead[part].any() else dead[part]})
    return shared, groups, bool((counts > 0).all())


def block_sparse_attention(q, k, v, mask_mod, block_size=BLOCK_SIZE):
    """(4) Block-sparse attention in plain PyTorch: each query tile takes only the key tiles it needs and
    hands them to the fused ``scaled_dot_product_attention``, so the work grows with the number of tiles
    computed, not with n x n. Query tiles that need the same number K of key tiles share one call; key tiles
    that slide along with the query tile (a band) are strided views, others are gathered."""
    batch, heads, n, d = _check_qkv(q, k, v, mask_mod)
    bs = _check_int("block_size", block_size, 1)
    shared, groups, covered = _gather_plan(mask_mod, n, heads, bs, str(q.device))
    n_blocks = -(-n // bs)
    # one row per tile: (batch * heads, tiles, bs * d) for a shared pattern, (batch, heads * tiles, bs * d) if not
    rows = (batch * heads, n_blocks, bs * d) if shared else (batch, heads * n_blocks, bs * d)
    if n % bs:
        q, k, v = (F.pad(t, (0, 0, 0, n_blocks * bs - n)) for t in (q, k, v))
    qb, kb, vb = (t.reshape(rows).contiguous() for t in (q, k, v))
    R, T, tile = rows[0], rows[1], bs * d
    out = torch.empty_like(qb) if covered else torch.zeros_like(qb)
    # gathered tiles land in buffers reused by every group: fresh pages for each copy cost more than the copy
    gathered = [g for g in groups if g["slide"] is None]
    most_q = max((len(g["q_block"]) for g in gathered), default=0)
    most_kv = max((g["kv_block"].numel() for g in gathered), default=0)
    q_buffer, k_buffer, v_buffer = (qb.new_empty(R * size * bs * d) for size in (most_q, most_kv, most_kv))

    def gather(t, index, buffer):  # (R, len(index), tile) rows of t, copied into the front of buffer
        if t.requires_grad and torch.is_grad_enabled():
            return t.index_select(1, index)  # out= has no gradient; a fresh copy keeps the kernel differentiable
        return torch.index_select(t, 1, index, out=buffer[:R * len(index) * tile].view(R, len(index), tile))

    def view(t, start, step, width):  # (R, G, width * bs, d): G windows of `width` tiles, `step` tiles apart
        return t.as_strided((R, G, width * bs, d), (T * tile, step * tile, d, 1), t.storage_offset() + start * tile)

    for group in groups:
        G, K = group["kv_block"].shape
        if group["slide"] is not None:
            (q_start, q_step), (kv_start, kv_step) = group["slide"]
            qg = view(qb, q_start, q_step, 1)
            kg, vg = view(kb, kv_start, kv_step, K), view(vb, kv_start, kv_step, K)
        else:
            qg = gather(qb, group["q_block"], q_buffer).view(R, G, bs, d)
            kv_block = group["kv_block"].flatten()
            kg, vg = (gather(t, kv_block, buffer).view(R, G, K * bs, d) for t, buffer in ((kb, k_buffer), (vb, v_buffer)))
        bias = group["bias"]
        if bias is not None:  # SDPA's fused CPU kernel wants an additive float mask with four dimensions
            # built once per plan and dtype: remaking it on every call costs as much as a small group's SDPA
            cached = group.setdefault("float_bias", {})
            if q.dtype not in cached:
                cached[q.dtype] = torch.zeros(bias.shape, dtype=q.dtype, device=q.device).masked_fill_(~bias, -math.inf)
            bias = cached[q.dtype]
        og = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=bias)
        if group["dead"] is not None:
            og = og.masked_fill(group["dead"], 0.0)  # a query that may attend nothing gets zeros
        if group["slide"] is not None:
            view(out, q_start, q_step, 1).copy_(og)
        else:
            out.index_copy_(1, group["q_block"], og.view(R, G, tile))
    return out.view(batch, heads, n_blocks * bs, d)[:, :, :n]


def block_sparse_memory(mask_mod, n, *, heads=4, head_dim=64, batch=1, block_size=BLOCK_SIZE, bytes_per_value=4):
    """What one call of ``block_sparse_attention`` allocates, in MiB, counted from its plan: the output
    (batch x heads x n x head_dim), the output of its largest SDPA call (written into place afterwards), and the
    buffers that gathered query, key and value tiles are copied into (none when every group slides along the
    sequence as views, as a band does). The float mask of the partial tiles is built once per pattern and kept with
    the plan, so it is not part of a call's allocations; nor are SDPA's own working buffers (a few per thread, of
    fixed size). Nothing here grows like n x n: the copies grow with the key tiles that one call gathers."""
    bs = _check_int("block_size", block_size, 1)
    shared, groups, _ = _gather_plan(mask_mod, n, heads, bs, "cpu")
    rows = batch * heads if shared else batch  # the leading axis of the tile rows (see block_sparse_attention)
    tile_mib = rows * bs * head_dim * bytes_per_value / 2**20
    gathered = [g for g in groups if g["slide"] is None]
    most_q = max((len(g["q_block"]) for g in gathered), default=0)
    most_kv = max((g["kv_block"].numel() for g in gathered), default=0)
    counted = {"output": batch * heads * n * head_dim * bytes_per_value / 2**20,
               "largest call's output": max(len(g["q_block"]) for g in groups) * tile_mib,
               "gathered tile copies": (most_q + 2 * most_kv) * tile_mib}
    return {**counted, "counted in all": sum(counted.values())}


KERNELS = {
    "naive": naive_attention,
    "sdpa_mask": sdpa_attention,
    "flex": flex_sparse_attention,
    "block_sparse": block_sparse_attention,
}


# ---------------------------------------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------------------------------------
def benchmark_patterns(n, heads=4, device=None, window=256, random_blocks=3):
    """The patterns the benchmark times at length n: a band of ``window``, a dilated window four times as wide with
    dilation 4 (as many pairs), BigBird with blocks of 128 and ``random_blocks`` random blocks, and 2% random keys.
    The defaults suit n = 4096 and above; notebook 02 halves the window and keeps one random block at n = 2048."""
    patterns = {
        f"band w={window}": band(window),
        f"dilated w={4 * window} d=4": dilated(4 * window, 4),
        f"BigBird b=128 r={random_blocks}": bigbird(n, 128, random_blocks, heads=heads, seed=0, device=device),
    }
    if n <= 16384:  # its table holds n x n booleans
        patterns["random 2%"] = random_keys(n, max(1, round(0.02 * n)), seed=0, device=device)
    return patterns


def benchmark(ns, *, patterns=None, kernels=None, heads=4, head_dim=64, repeat=3, max_dense_mask_n=8192,
              max_naive_n=4096, device="cpu", seed=0, dense_flex=True, threads=None, window=256, random_blocks=3):
    """Time each kernel on each pattern (and, once per n, dense unmasked SDPA and, with ``dense_flex``,
    FlexAttention computing every tile); yields the suite's records. ``speedup`` is over dense SDPA at the
    same n, timed in turn with each kernel round by round (``time_rounds``): the median of the per-round
    ratios, with the lowest and highest round in ``speedup_low`` and ``speedup_high``; ``of_ideal`` is that
    speedup times the fraction of tiles computed (1 would be perfect skipping at SDPA's speed per tile).
    ``patterns`` picks names from ``benchmark_patterns`` (with ``window`` and ``random_blocks``); kernels that materialise n x n are skipped above
    ``max_naive_n`` (naive) and ``max_dense_mask_n`` (SDPA with a mask). ``threads``: time on that many of torch's
    intra-op threads (``on_threads``, as ``time_windows`` does); each record stores the number in ``threads``, and
    in ``dense_ms`` the median time of the dense SDPA calls paired with its rounds. Only the forward pass is timed,
    on inputs that need no gradient. With ``dense_flex``, each round of FlexAttention on a pattern also times
    FlexAttention computing every tile, right after the dense SDPA call: ``skipping`` is the median over rounds of
    (dense flex time / sparse flex time) x density, its speed per kept tile against its own dense run's, with
    ``skipping_low`` and ``skipping_high`` the lowest and highest round (``flex_skipping`` reads them).

    Why one thread is the setting to report on a shared machine: torch splits a call among its threads and the call
    ends only when its slowest thread does, so when other work holds the cores, a thread that waits for one delays
    the whole call, and more often the short calls of the block-sparse kernels than dense SDPA's one long call. One
    thread removes that wait, not the load: with more runnable processes than cores, the one thread is itself
    descheduled at times, which the spread of the rounds and of ``dense_ms`` across records shows; only the paired
    ratios compare calls made moments apart. On a quiet machine ``python -m utils.benchmarks --suite sparse
    --threads N`` times N threads."""
    if threads is not None:
        with on_threads(threads):
            yield from benchmark(ns, patterns=patterns, kernels=kernels, heads=heads, head_dim=head_dim, repeat=repeat,
                                 max_dense_mask_n=max_dense_mask_n, max_naive_n=max_naive_n, device=device, seed=seed,
                                 dense_flex=dense_flex, window=window, random_blocks=random_blocks)
        return
    kernels = list(KERNELS) if kernels is None else kernels
    unknown = set(kernels) - set(KERNELS)
    if unknown:
        raise ValueError(f"unknown kernels {sorted(unknown)}; choose from {sorted(KERNELS)}")

    generator = torch.Generator(device=device).manual_seed(seed)
    no_mask = full()
    for n in ns:
        q, k, v = (torch.randn(1, heads, n, head_dim, generator=generator, device=device) for _ in range(3))

        def dense():
            return F.scaled_dot_product_attention(q, k, v)

        def record(kernel, pattern, fn, density, own_dense=None):
            # dense SDPA is timed in turn with each kernel, round by round: each ratio compares calls made
            # moments apart; the speedup is their median, with the lowest and highest round beside it.
            # own_dense: the same kernel computing every tile, timed in the same rounds (the skipping factor)
            skipping = {}
            if fn is dense:
                ms, speedups = statistics.median(time_rounds(fn, lambda: None, warmup=1, repeat=repeat)[0]), [1.0]
                paired_dense_ms = ms
            else:
                fn_ms, dense_ms, *own_ms = time_rounds(fn, dense, *[own_dense] * (own_dense is not None), warmup=1,
                                                       repeat=repeat)
                ms, speedups = statistics.median(fn_ms), [d / f for f, d in zip(fn_ms, dense_ms)]
                paired_dense_ms = statistics.median(dense_ms)
                if own_ms:
                    rounds = [o / f * density for f, o in zip(fn_ms, own_ms[0])]
                    skipping = {"skipping": statistics.median(rounds), "skipping_low": min(rounds),
                                "skipping_high": max(rounds)}
            speedup = statistics.median(speedups)
            return {"suite": "sparse", "kernel": kernel, "pattern": pattern, "n": n, "threads": torch.get_num_threads(), "ms": ms,
                    "dense_ms": paired_dense_ms, "peak_mib": peak_mib(fn, device=str(device)), "density": density,
                    "speedup": speedup, "of_ideal": speedup * density, "speedup_low": min(speedups),
                    "speedup_high": max(speedups), **skipping}

        yield record("sdpa_dense", "none", dense, 1.0)
        if "flex" in kernels and dense_flex:  # every tile computed: FlexAttention's speed per tile against SDPA's
            yield record("flex", "none", lambda: flex_sparse_attention(q, k, v, no_mask), 1.0)
        available = benchmark_patterns(n, heads=heads, device=device, window=window, random_blocks=random_blocks)
        names = list(available) if patterns is None else patterns
        for name in names:
            if name not in available:
                if name in benchmark_patterns(1024, heads=1, window=window, random_blocks=random_blocks):
                    continue  # a pattern left out at this n
                raise ValueError(f"unknown pattern {name!r}; choose from {sorted(available)}")
            mask_mod = available[name]
            density = block_density(mask_mod, n, heads=heads, device=str(device))
            for kernel in kernels:
                if (kernel == "naive" and n > max_naive_n) or (kernel == "sdpa_mask" and n > max_dense_mask_n):
                    continue
                fn = KERNELS[kernel]
                own_dense = (lambda: flex_sparse_attention(q, k, v, no_mask)) if kernel == "flex" and dense_flex else None
                yield record(kernel, name, lambda: fn(q, k, v, mask_mod), density, own_dense)
            dense_mask.cache_clear()  # the n x n masks are large: keep one pattern's at a time
        del q, k, v


@register("sparse")
def run(long=False):
    """Default: n = 1k, 4k, 8k on the CPU. ``long``: up to 16k on the CPU, and up to 64k when a GPU is there."""
    if torch.cuda.is_available() and long:
        return benchmark([1024, 4096, 16384, 65536], device="cuda", max_naive_n=16384, max_dense_mask_n=16384)
    if long:
        return benchmark([1024, 2048, 4096, 8192, 16384], max_naive_n=8192, max_dense_mask_n=16384)
    # the notebook's default: the kernels that hold n x n numbers stop at 4k
    return benchmark([1024, 4096, 8192], max_naive_n=4096, max_dense_mask_n=4096, repeat=5)


# ---------------------------------------------------------------------------------------------------------
# Notebook helpers: density table, BigBird's random blocks, layer windows
# ---------------------------------------------------------------------------------------------------------
def density_table(n, w=64, d=4, g=2, r=16, b=128):
    """The five atomic patterns at length ``n``: the fraction of pairs each keeps by its formula and as
    measured on the mask, and the fraction of 128 x 128 tiles holding at least one kept pair."""
    import pandas as pd

    patterns = {
        "band": (band(w), (2 * w + 1) / n),
        "dilated": (dilated(4 * w, d), (2 * (4 * w // d) + 1) / n),
        "global": (global_tokens(*range(g)), 2 * g / n),
        "random": (random_keys(n, r, seed=0), r / n),
        "block-local": (block_local(b), b / n),
    }
    return pd.DataFrame([{"n": n, "pattern": name, "formula": formula, "token density": token_density(p, n),
                          "128-tile density": block_density(p, n)} for name, (p, formula) in patterns.items()])


def bigbird_random_blocks(weights, block_size):
    """The random blocks a transformers BigBird layer attended, read from its (heads, n, n) attention weights:
    every attended block outside the window (a band of 3 blocks) and the first and last (global) blocks,
    as a bool tensor (heads, n_blocks, n_blocks)."""
    if not isinstance(weights, torch.Tensor) or weights.dim() != 3 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError("bigbird_random_blocks needs attention weights of shape (heads, n, n)")
    n_blocks = -(-weights.shape[-1] // _check_int("block_size", block_size, 1))
    window_and_global = dense_mask(or_masks(band(1), global_tokens(0, n_blocks - 1)), n_blocks)
    return tiles(weights > 0, block_size) & ~window_and_global


def tiny_bigbird(train, block_size=8, num_random_blocks=2, *, layers=2, max_positions=256):
    """A transformers ``BigBirdModel`` in block_sparse mode with random weights (nothing downloaded), two heads of
    16 dimensions, no dropout; in training mode (``train``) it draws random blocks, in eval mode it does not."""
    from transformers import BigBirdConfig, BigBirdModel

    config = BigBirdConfig(vocab_size=100, hidden_size=32, num_attention_heads=2, num_hidden_layers=layers,
                           intermediate_size=64, max_position_embeddings=max_positions,
                           attention_type="block_sparse", block_size=block_size,
                           num_random_blocks=num_random_blocks, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)
    return BigBirdModel(config).train(train)


def _on_threads_text(threads):
    threads = int(threads)
    return f" on {threads} thread{'s' * (threads > 1)}"


def kernel_summary(results, memory_ratio, patterns):
    """One line per pattern of the ``benchmark`` records: each block-sparse kernel's speedup over dense SDPA and
    fraction of the ideal, and the memory of naive and masked SDPA as a multiple of compiled FlexAttention's."""
    lines = []
    for pattern in patterns:
        at = results[results.pattern == pattern].set_index("kernel")
        flex = at.loc["flex"]
        where = _on_threads_text(flex.threads) if "threads" in at else ""
        speeds = ", ".join(f"{label} {at.loc[kernel, 'speedup']:.1f} x ({at.loc[kernel, 'of_ideal']:.2f})"
                           for kernel, label in (("flex", "compiled flex"), ("block_sparse", "plain block-sparse"))
                           if kernel in at.index)
        lines.append(
            f"{pattern}, n = {int(flex.n)} (ideal {1 / flex.density:.1f} x), speedup over dense SDPA (share of ideal)"
            f"{where}: {speeds}. Naive and masked SDPA need "
            f"{memory_ratio.loc[pattern, 'naive']:.0f} x and {memory_ratio.loc[pattern, 'sdpa_mask']:.0f} x flex's "
            f"memory, the plain block-sparse kernel {memory_ratio.loc[pattern, 'block_sparse']:.1f} x.")
    return lines


def layer_windows(config):
    """Each layer's sliding window or chunk (None for a global layer) from a transformers decoder configuration:
    ``layer_types`` when it has them, otherwise every layer windowed by ``sliding_window``."""
    types = getattr(config, "layer_types", None) or ["sliding_attention"] * config.num_hidden_layers
    # a chunked layer (Llama 4) sees at most its own chunk, so its cache holds at most attention_chunk_size positions
    sizes = {"sliding_attention": getattr(config, "sliding_window", None),
             "chunked_attention": getattr(config, "attention_chunk_size", None)}
    return [sizes.get(kind) for kind in types]


# ---------------------------------------------------------------------------------------------------------
# Since the book: KV caches of MHA / MQA / GQA / MLA, LSH buckets, dynamic block selection, IO counts
# ---------------------------------------------------------------------------------------------------------
def kv_cache_per_token(*, layers, kv_heads=None, head_dim=None, latent_dim=None, bytes_per_value=2):
    """Bytes of cache one token costs across all layers. Multi-head (kv_heads = heads), multi-query
    (kv_heads = 1) and grouped-query attention keep a key and a value of ``head_dim`` per KV head;
    multi-head latent attention (DeepSeek-V2/V3) keeps one compressed vector of ``latent_dim`` values
    per layer (kv_lora_rank + the decoupled RoPE key's dimension), shared by all heads."""
    layers = _check_int("layers", layers, 1)
    if latent_dim is not None:
        if kv_heads is not None or head_dim is not None:
            raise ValueError("give either latent_dim (MLA) or kv_heads and head_dim, not both")
        return layers * _check_int("latent_dim", latent_dim, 1) * bytes_per_value
    if kv_heads is None or head_dim is None:
        raise ValueError("kv_cache_per_token needs kv_heads and head_dim (or latent_dim for MLA)")
    return layers * 2 * _check_int("kv_heads", kv_heads, 1) * _check_int("head_dim", head_dim, 1) * bytes_per_value


def lsh_buckets(x, n_buckets, *, seed=0):
    """Reformer's angular LSH (Kitaev et al. 2020, sec. 2): project the unit vectors ``x`` (..., n, d) with one
    random rotation R (d, n_buckets / 2) and take argmax([xR, -xR]) as the bucket, (..., n) int64."""
    n_buckets = _check_int("n_buckets", n_buckets, 2)
    if n_buckets % 2:
        raise ValueError(f"n_buckets must be even (argmax over [xR, -xR]), got {n_buckets}")
    generator = torch.Generator().manual_seed(_check_int("seed", seed))
    rotation = torch.randn(x.shape[-1], n_buckets // 2, generator=generator, dtype=x.dtype).to(x.device)
    projected = F.normalize(x, dim=-1) @ rotation
    return torch.cat([projected, -projected], dim=-1).argmax(dim=-1)


def same_bucket(q_buckets, k_buckets):
    """The mask_mod of LSH attention: a query attends the keys hashed to its own bucket.
    ``q_buckets`` and ``k_buckets``: (heads, n) or (n,) integer buckets (``lsh_buckets``)."""
    qb, kb = (t.reshape(-1, t.shape[-1]) for t in (q_buckets, k_buckets))
    if qb.shape != kb.shape:
        raise ValueError(f"q and k buckets must have the same shape, got {tuple(qb.shape)} and {tuple(kb.shape)}")
    if qb.shape[0] == 1:
        qb, kb = qb[0], kb[0]

        def bucket_mask(b, h, q_idx, kv_idx):
            return qb[q_idx] == kb[kv_idx]

        return bucket_mask

    def per_head_bucket_mask(b, h, q_idx, kv_idx):
        return qb[h, q_idx] == kb[h, kv_idx]

    return per_head_bucket_mask


def bucket_attention_reference(q, k, v, q_buckets, k_buckets):
    """LSH attention computed bucket by bucket in float64, without any mask: for each head and bucket, softmax
    attention of the bucket's queries over the bucket's keys. q, k, v: (1, heads, n, d); buckets (heads, n)."""
    out = torch.zeros(q.shape[:-1] + v.shape[-1:], dtype=torch.float64)
    for h in range(q.shape[1]):
        for bucket in torch.unique(q_buckets[h]):
            queries = (q_buckets[h] == bucket).nonzero().flatten()
            keys = (k_buckets[h] == bucket).nonzero().flatten()
            if len(keys) == 0:
                continue
            scores = q[0, h, queries].double() @ k[0, h, keys].double().T / math.sqrt(q.shape[-1])
            out[0, h, queries] = scores.softmax(dim=-1) @ v[0, h, keys].double()
    return out


def top_k_blocks(q, k, top_k, *, block_size=BLOCK_SIZE):
    """Dynamic block selection (MoBA, Lu et al. 2025; the selection branch of NSA, Yuan et al. 2025), here
    without causality: score each (query block, key block) pair by the dot product of the block's mean query
    and mean key, and let every query block attend its ``top_k`` best key blocks. q, k: (1, heads, n, d) with n
    a multiple of ``block_size``. Returns (mask_mod, table), table the bool (heads, blocks, blocks) choice."""
    top_k = _check_int("top_k", top_k, 1)
    bs = _check_int("block_size", block_size, 1)
    n = q.shape[-2]
    if n % bs:
        raise ValueError(f"top_k_blocks needs n ({n}) to be a multiple of block_size ({bs})")
    n_blocks = n // bs
    if top_k > n_blocks:
        raise ValueError(f"top_k={top_k} is more than the {n_blocks} key blocks there are")
    q_mean, k_mean = (x[0].unflatten(-2, (n_blocks, bs)).mean(dim=-2) for x in (q, k))
    picked = (q_mean @ k_mean.transpose(-1, -2)).topk(top_k, dim=-1).indices
    table = torch.zeros(q.shape[1], n_blocks, n_blocks, dtype=torch.bool).scatter_(-1, picked, True)
    return blockwise(lookup(table), bs), table


def attention_io(n, d, sram, *, algorithm, bytes_per_value=2):
    """Bytes one head of attention (n queries and keys of dimension d) moves between slow memory (HBM) and
    fast memory (SRAM holding ``sram`` values), counted as in Dao et al. 2022 (FlashAttention, Algorithm 0 and
    the proof of Theorem 2). The tiled algorithms keep blocks of B_c = ceil(sram / 4d) keys and values in fast
    memory and stream the queries past them (T_c = ceil(n / B_c) blocks):

    * ``naive``: S = QK^T written out, read for the softmax, P written, read for PV: 4nd + 4n^2 values;
    * ``tiled two-pass``: no n x n matrix, but an exact softmax that needs each row's maximum and sum before any
      output: a first pass over the key blocks for the statistics (Q read, max and sum read and written per
      block), a second that adds each block's share to O: 3nd + T_c (4nd + 6n);
    * ``online softmax``: FlashAttention's single pass, rescaling the running max and sum on the fly:
      2nd + T_c (3nd + 4n), which is Theorem 2's Theta(n^2 d^2 / M) when d <= M <= nd."""
    n, d, sram = (_check_int(name, value, 1) for name, value in (("n", n), ("d", d), ("sram", sram)))
    if sram < 4 * d:
        raise ValueError(f"sram ({sram} values) must hold at least 4 rows of d = {d}")
    key_blocks = -(-n // -(-sram // (4 * d)))
    if algorithm == "naive":
        values = 4 * n * d + 4 * n * n
    elif algorithm == "tiled two-pass":
        values = 3 * n * d + key_blocks * (4 * n * d + 6 * n)
    elif algorithm == "online softmax":
        values = 2 * n * d + key_blocks * (3 * n * d + 4 * n)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose from 'naive', 'tiled two-pass', 'online softmax'")
    return values * bytes_per_value


# ---------------------------------------------------------------------------------------------------------
# The Sparse Transformer's factorised patterns (Child et al. 2019) and Linformer's low-rank projection
# ---------------------------------------------------------------------------------------------------------
def sparse_transformer(stride, kind="strided", summary=1):
    """The two factorised causal patterns of the Sparse Transformer (Child et al. 2019, Section 4.2), as one
    mask: the union of the two heads' sets A(1) and A(2) (the paper's "merged head"), ``stride`` = l.

    * ``strided``: A(1)_i = {max(0, i - l), ..., i} (the previous l positions), A(2)_i = {j <= i : (i - j) mod l = 0};
    * ``fixed``: A(1)_i = {j <= i : floor(j / l) = floor(i / l)} (its own block), A(2)_i = {j <= i : j mod l >= l - c}
      (the last c = ``summary`` positions of every block, which summarise it for all later positions)."""
    l_ = _check_int("stride", stride, 1)
    c_ = _check_int("summary", summary, 1)
    if c_ > l_:
        raise ValueError(f"summary ({c_}) must be at most the stride ({l_})")
    l, c = torch.tensor(l_), torch.tensor(c_)
    if kind == "strided":
        def strided_mask(b, h, q_idx, kv_idx):
            back = q_idx - kv_idx
            return (back >= 0) & ((back <= l) | (back % l == 0))

        return strided_mask
    if kind == "fixed":
        def fixed_mask(b, h, q_idx, kv_idx):
            own_block = torch.div(q_idx, l, rounding_mode="floor") == torch.div(kv_idx, l, rounding_mode="floor")
            return (kv_idx <= q_idx) & (own_block | (kv_idx % l >= l - c))

        return fixed_mask
    raise ValueError(f"kind must be 'strided' or 'fixed', got {kind!r}")


def sparse_transformer_reference(n, stride, kind="strided", summary=1):
    """The same sets written element by element from the paper's definitions (a slow bool (n, n) mask)."""
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(i + 1):
            if kind == "strided":
                a1, a2 = j >= max(0, i - stride), (i - j) % stride == 0
            else:
                a1, a2 = j // stride == i // stride, j % stride in range(stride - summary, stride)
            mask[i, j] = a1 or a2
    return mask


def linformer_attention(q, k, v, e, f):
    """Linformer (Wang et al. 2020): project the n keys and values down to k rows with ``e`` and ``f`` of shape
    (k, n), then attend as usual: softmax(Q (E K)^T / sqrt(d)) (F V). Time and memory n x k instead of n x n."""
    n = q.shape[-2]
    for name, p in (("e", e), ("f", f)):
        if p.dim() != 2 or p.shape[1] != n:
            raise ValueError(f"{name} must have shape (k, n) with n = {n}, got {tuple(p.shape)}")
    return F.scaled_dot_product_attention(q, e @ k, f @ v)


def pooling_projection(n, k, dtype=torch.float32):
    """A fixed (k, n) projection that averages n / k consecutive positions (segment means): with E = F = it,
    keys and values that vary slowly along the sequence are summarised with little loss. (Linformer learns
    its E and F; this untrained choice is ours, to show what the projection needs from the input.)"""
    n, k = _check_int("n", n, 1), _check_int("k", k, 1)
    if n % k:
        raise ValueError(f"k ({k}) must divide n ({n})")
    return torch.eye(k, dtype=dtype).repeat_interleave(n // k, dim=1) * (k / n)


def linformer_error(q, k, v, ranks):
    """Relative error (Frobenius norm, float64) of Linformer with ``pooling_projection`` (E = F) against
    exact softmax attention, for each projected length in ``ranks``."""
    q, k, v = q.double(), k.double(), v.double()
    exact = F.scaled_dot_product_attention(q, k, v)
    errors = {}
    for rank in ranks:
        e = pooling_projection(q.shape[-2], rank, dtype=torch.double)
        errors[rank] = ((linformer_attention(q, k, v, e, e) - exact).norm() / exact.norm()).item()
    return errors


def _layer_io(module, call):
    """Run ``call()`` and return the hidden states that went into ``module`` and the first tensor it returned."""
    seen = {}

    def hook(mod, args, kwargs, output):
        seen["hidden"] = args[0] if args else kwargs["hidden_states"]
        seen["output"] = output[0] if isinstance(output, tuple) else output

    handle = module.register_forward_hook(hook, with_kwargs=True)
    try:
        call()
    finally:
        handle.remove()
    return seen["hidden"], seen["output"]


def _heads(x, heads):  # (batch, n, heads * d) -> (batch, heads, n, d)
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def weighted_reference_attention(q, k, v, mask, log_weight=None):
    """Dense float64 softmax attention over ``mask``, with ``log_weight`` (broadcastable to the scores) added to
    the scores: adding log(m) to a key's score is the same as counting that key m times in the softmax."""
    scores = q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1])
    if log_weight is not None:
        scores = scores + log_weight
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return weights @ v.double()


def longformer_value_check(model, input_ids, global_attention_mask):
    """Largest difference between the first layer's attention output of a transformers ``LongformerModel`` and
    attention recomputed from that layer's own projections: ordinary queries over the band and the global keys,
    global queries (with the separate ``*_global`` projections) over every key."""
    attention = model.encoder.layer[0].attention.self
    heads, window = attention.num_heads, attention.one_sided_attn_window_size
    with torch.no_grad():
        hidden, output = _layer_io(attention, lambda: model(input_ids, global_attention_mask=global_attention_mask))
        n = hidden.shape[1]
        is_global = global_attention_mask[0].bool()
        mask = dense_mask(longformer(window, is_global.nonzero().flatten().tolist()), n)
        local = weighted_reference_attention(*(_heads(p(hidden), heads) for p in
                                               (attention.query, attention.key, attention.value)), mask)
        everything = weighted_reference_attention(*(_heads(p(hidden), heads) for p in
                                                    (attention.query_global, attention.key_global,
                                                     attention.value_global)), torch.ones(n, n, dtype=torch.bool))
        expected = torch.where(is_global[None, None, :, None], everything, local)
        got = _heads(output, heads)
    return (got.double() - expected).abs().max().item()


def bigbird_eval_value_check(model, input_ids):
    """For a transformers ``BigBirdModel`` in eval mode and block_sparse attention: the largest difference between
    its first layer's attention output and two references built from that layer's own q, k, v: plain window +
    global attention, and the same with key block 0 counted 1 + r times for the query blocks that have random
    blocks (1 .. n_blocks - 2), which is what attending r random blocks that all point at block 0 does."""
    attention = model.encoder.layer[0].attention.self
    heads, bs, r = attention.num_attention_heads, attention.block_size, attention.num_random_blocks
    with torch.no_grad():
        hidden, output = _layer_io(attention, lambda: model(input_ids))
        q, k, v = (_heads(p(hidden), heads) for p in (attention.query, attention.key, attention.value))
        n = hidden.shape[1]
        n_blocks = n // bs
        mask = dense_mask(bigbird(n, bs, r, heads=heads, full_when_short=False,
                                  random_blocks=torch.zeros(heads, n_blocks, n_blocks, dtype=torch.bool)), n, heads=heads)
        block = torch.arange(n) // bs
        repeated = ((block[:, None] >= 1) & (block[:, None] <= n_blocks - 2) & (block[None, :] == 0)).double()
        got = _heads(output, heads).double()
        once = weighted_reference_attention(q, k, v, mask)
        repeat = weighted_reference_attention(q, k, v, mask, repeated * math.log(1 + r))
    return {"window + global": (got - once).abs().max().item(),
            f"block 0 counted 1 + {r} times": (got - repeat).abs().max().item()}


def round_verdict(ratios):
    """How a set of paired speedup ratios reads: faster (or slower) in every round, or the rounds disagree."""
    ratios = torch.as_tensor(ratios)
    if bool((ratios > 1).all()):
        return "faster in every round"
    if bool((ratios < 1).all()):
        return "slower in every round"
    return "rounds disagree"


def needle_selection(trials=50, *, n=2048, block_size=BLOCK_SIZE, top_k=2, strength=10.0, seed=0):
    """The case block selection by mean keys cannot see: the queries of one block share a direction u, and a
    single key of another block (one relevant token among ``block_size``) carries ``strength`` * u. Per trial
    (fresh random q, k, block and position), returns whether ``top_k_blocks`` picked that key's block for the
    query block, and the share of exact attention the query block puts on that one key."""
    g = torch.Generator().manual_seed(seed)
    n_blocks = n // block_size
    rows = []
    for _ in range(trials):
        u = torch.randn(64, generator=g)
        u = u / u.norm()
        q, k = (torch.randn(1, 1, n, 64, generator=g) for _ in range(2))
        query_block, needle_block = torch.randperm(n_blocks, generator=g)[:2].tolist()
        needle = needle_block * block_size + int(torch.randint(block_size, (1,), generator=g))
        q[0, 0, query_block * block_size:(query_block + 1) * block_size] += strength * u
        k[0, 0, needle] += strength * u
        _, table = top_k_blocks(q, k, top_k, block_size=block_size)
        queries = q[0, 0, query_block * block_size:(query_block + 1) * block_size]
        share = torch.softmax(queries @ k[0, 0].T / 8, dim=-1)[:, needle].mean().item()
        rows.append({"picked": bool(table[0, query_block, needle_block]), "exact weight on the key": share})
    return rows


def sdpa_causal_work(n, *, kv_split=512):
    """The fraction of the n x n (query, key) pairs that PyTorch's CPU flash-attention kernel computes for
    ``scaled_dot_product_attention(q, k, v, is_causal=True)`` on float inputs without a mask
    (aten/src/ATen/native/cpu/FlashAttentionKernel.cpp): queries in blocks of 256 rows (n >= 768; 64 from 192,
    else 32), keys in blocks of ``kv_split`` = 512 columns. A query block stops at the last key block it needs,
    but computes that block in full and masks inside it, so the last partly masked key block costs as much
    as a full one."""
    n = _check_int("n", n, 1)
    kv_split = _check_int("kv_split", kv_split, 1)
    q_split = min(n, 256 if n >= 768 else 64 if n >= 192 else 32)
    kv_split = min(n, kv_split)
    pairs = 0
    for start in range(0, n, q_split):
        rows = min(q_split, n - start)
        last_key = min(start + rows, n)  # keys 0 .. last_key - 1 are needed
        pairs += rows * sum(min(kv_split, n - k) for k in range(0, last_key, kv_split))
    return pairs / n**2


def time_windows(patterns, ns, *, repeat=7, heads=4, head_dim=64, seed=0, span=4096, threads=None):
    """Time ``block_sparse_attention`` on each causal pattern against causal SDPA, and causal SDPA against dense
    SDPA, in paired rounds at each length. Returns two tables: per (n, pattern) the ideal speedup (the pairs
    causal SDPA computes at its own block sizes, ``sdpa_causal_work``, over the 128-tiles the block-sparse kernel
    computes), the median, lowest and highest round, the verdict and a check against SDPA with the dense mask;
    per n, the share of pairs causal SDPA computes, the time of dense over causal SDPA that this count predicts
    and the one skipping by 128-tiles would give, the measured ratio, and which predictions its rounds hold. Each timing runs ``span // n`` calls (at least one), so that a round at a short
    length is not a single call of a few milliseconds, which the scheduler's noise swamps. ``threads``: run on that
    many of torch's intra-op threads (restored afterwards); the tables record the number in a column. On a machine
    whose cores also run other work, one thread spares each call the wait for its slowest thread, but not the load
    itself: with more runnable processes than cores even one thread is descheduled at times, and the spread of the
    rounds shows how much (``benchmark`` says more).

    The ideal of a pattern divides the same count by the pattern's share of 128-tiles, so it rests on the same
    assumption, that time follows the pairs computed; the causal table checks that assumption for SDPA itself.
    Skipping by 128-tiles, dense / causal would approach 2 as n grows; with blocks of 512 keys the count predicts
    less. ``rounds hold`` names the predictions that lie within the lowest to highest round."""
    import pandas as pd

    if threads is not None:
        with on_threads(threads):
            return time_windows(patterns, ns, repeat=repeat, heads=heads, head_dim=head_dim, seed=seed, span=span)
    generator = torch.Generator().manual_seed(seed)
    rows, causal_rows = [], []
    for n in ns:
        q, k, v = (torch.randn(1, heads, n, head_dim, generator=generator) for _ in range(3))
        calls = max(1, span // n)

        def repeated(fn):
            return lambda: [fn() for _ in range(calls)]

        def causal_sdpa():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

        saving = torch.tensor(paired_ratios(repeated(causal_sdpa),
                                            repeated(lambda: F.scaled_dot_product_attention(q, k, v)), repeat=repeat))
        counted, by_tiles = 1 / sdpa_causal_work(n), 1 / block_density(causal(), n)
        low, high = saving.min().item(), saving.max().item()
        holds = [name for name, x in (("counted", counted), ("128-tiles", by_tiles)) if low <= x <= high]
        causal_rows.append({"n": n, "threads": torch.get_num_threads(), "pairs causal SDPA computes": sdpa_causal_work(n),
                            "dense / causal time, counted": counted, "if it skipped 128-tiles": by_tiles,
                            "measured (median)": saving.median().item(), "lowest": low, "highest": high,
                            "rounds hold": " and ".join(holds) or "neither"})
        for name, pattern in patterns.items():
            ratios = torch.tensor(paired_ratios(repeated(lambda: block_sparse_attention(q, k, v, pattern)),
                                                repeated(causal_sdpa), repeat=repeat))
            rows.append({"n": n, "threads": torch.get_num_threads(), "pattern": name, "ideal": sdpa_causal_work(n) / block_density(pattern, n),
                         "speedup (median)": ratios.median().item(), "lowest": ratios.min().item(),
                         "highest": ratios.max().item(), "verdict": round_verdict(ratios),
                         "equals SDPA with the mask": torch.allclose(block_sparse_attention(q, k, v, pattern),
                                                                     sdpa_attention(q, k, v, pattern), atol=1e-5)})
    return pd.DataFrame(rows), pd.DataFrame(causal_rows)


def compare_of_ideal(timing, first, second):
    """Per length of a ``time_windows`` table: each of two patterns' speedup as a share of its own ideal, from the
    lowest to the highest round, and whether the second pattern's range lies wholly below, wholly above or across
    the first's (only a range wholly apart is a difference this run can see); the last line names the lengths
    where the ranges lie apart, or says that none does.

    What it tests in notebook 02: four sink tokens beside a sliding window add a column of partial tiles (a lower
    ideal) and break the sliding structure, so the key tiles of a query tile are no longer one run that moves with
    it and ``block_sparse_attention`` gathers them, a copy on every call, instead of viewing them in place. That
    predicts a lower share of its own ideal for the window with sinks. Where the ranges overlap, whatever the copy
    costs hides within the spread of the rounds."""
    lines, apart = [], []
    for n, rows in timing.groupby("n"):
        at = rows.set_index("pattern")
        low, high = at.lowest / at.ideal, at.highest / at.ideal
        if high[second] < low[first]:
            verdict = f"{second} lower"
        elif low[second] > high[first]:
            verdict = f"{second} higher"
        else:
            verdict = "the ranges overlap, no difference this run can see"
        lines.append(f"n = {n}, speedup as a share of its own ideal: {first} {low[first]:.2f}-{high[first]:.2f}, "
                     f"{second} {low[second]:.2f}-{high[second]:.2f}: {verdict}")
        if not verdict.startswith("the ranges"):
            apart.append(f"n = {n} ({verdict})")
    lines.append("lengths that separate the two: " + ", ".join(apart) if apart else
                 "no length separates the two in this run: any difference is within the spread of the rounds")
    return lines


def share_trend(timing, pattern):
    """One line on a ``time_windows`` table: how ``pattern``'s speedup as a share of its own ideal moves from the
    shortest to the longest length, from the lowest to the highest round at each. The block-sparse kernel makes
    the same calls at every length of a sliding window, so a cost that stays fixed per call weighs less as the
    work grows and makes the share climb, while a cost that grows with the work keeps it level: "climbs" when the
    longest length's range lies wholly above the shortest's, "falls" when wholly below, else no change this run
    can see.

    The two costs, for a sliding window of four 128-tiles: the kernel makes the same five SDPA calls at every length
    (query tiles grouped by how many key tiles they need, one to five with the diagonal tile), so what each call
    costs whatever its size (setting it up; on several threads, also its threads waiting for one another or for a
    core that other work holds) stays fixed. What grows with the work: each kept tile costs more than causal SDPA
    pays for the same pairs, because a call is a stack of short problems (128 queries against at most 640 keys),
    partial tiles carry a float mask, and every output tile is copied into place. Overlapping ranges show no change
    this run can see, not that the share is level."""
    rows = timing[timing.pattern == pattern].sort_values("n")
    if len(rows) < 2:
        raise ValueError(f"share_trend needs {pattern!r} at two lengths or more, got {len(rows)}")
    first, last = rows.iloc[0], rows.iloc[-1]
    (low0, high0), (low1, high1) = ((r.lowest / r.ideal, r.highest / r.ideal) for r in (first, last))
    side = _ranges_apart(low0, high0, low1, high1)
    verdict = {"higher": "climbs: part of the cost stays fixed while the work grows",
               "lower": "falls: the cost grows faster than the work",
               None: "the ranges overlap, no change this run can see"}[side]
    where = f" on {int(first.threads)} thread{'s' * (int(first.threads) > 1)}" if "threads" in rows else ""
    return (f"{pattern}{where}, speedup as a share of its own ideal from n = {int(first.n)} to n = {int(last.n)} (ideal "
            f"{first.ideal:.2f} to {last.ideal:.2f}): {low0:.2f}-{high0:.2f} to {low1:.2f}-{high1:.2f}, {verdict}")


def flex_skipping(results):
    """Split compiled FlexAttention's ``of_ideal`` on each pattern of a ``benchmark`` table into its speed per
    tile (the dense flex row's speedup over SDPA, with its lowest and highest round) and its skipping. When the
    table has ``benchmark``'s per-round skipping columns (dense and sparse flex timed in the same rounds), the
    skipping is their median, lowest and highest round; otherwise it is of_ideal / tile speed, with the range it
    can take when the extreme rounds of the two separate runs are combined. Only differences between patterns
    larger than that range say something about the mask.

    Why the tile speed sits below 1 on a CPU: ``torch.compile`` turns FlexAttention into a C++ template
    (``torch/_inductor/codegen/cpp_flex_attention_template.py``) that computes q·kᵀ in a generated micro-kernel
    with a register tile of 1 x 16, while p·v goes through ``cpublas::brgemm``, the kind of library routine SDPA's
    CPU kernel uses for both products. ``scripts/flex_cpu_tiles.py`` tries other tile
    shapes in that template. A partial tile also evaluates the mask function on every pair it holds, which a full
    tile skips; the dilated window, whose gaps leave no tile full, pays that on every tile it keeps."""
    import pandas as pd

    dense = results[(results.kernel == "flex") & (results.pattern == "none")].iloc[0]
    at = results[(results.kernel == "flex") & (results.pattern != "none")].set_index("pattern")
    tile = {"tile speed vs SDPA": dense.speedup, "tile speed, lowest": dense.speedup_low,
            "tile speed, highest": dense.speedup_high}
    if "skipping" in at and at.skipping.notna().all():  # dense and sparse flex paired round by round
        split = pd.DataFrame({**tile, "skipping": at.skipping, "skipping, lowest": at.skipping_low,
                              "skipping, highest": at.skipping_high, "of_ideal": at.of_ideal})
        split.attrs["paired"] = True
        return split
    return pd.DataFrame({**tile, "skipping": at.of_ideal / dense.speedup,
                         "skipping, lowest": at.speedup_low * at.density / dense.speedup_high,
                         "skipping, highest": at.speedup_high * at.density / dense.speedup_low,
                         "of_ideal": at.of_ideal})


def reach(mask, layers):
    """The share of (query, key) pairs connected through ``layers`` stacked layers that each attend ``mask``
    (an (n, n) boolean matrix, True where the query may attend the key): a pair is connected when some path
    query -> ... -> key of exactly that many steps uses only allowed pairs (of at most that many when every token
    may attend itself, as in the patterns here). Returns one share per depth 1..layers."""
    layers = _check_int("layers", layers, 1)
    if mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"mask must be a square (n, n) matrix, got shape {tuple(mask.shape)}")
    step = mask.float()
    connected, shares = step.clone(), []
    for _ in range(layers):
        shares.append(connected.gt(0).float().mean().item())
        connected = (connected @ step).clamp_(max=1.0)
    return shares


def notebook_summary(*, densities, bigbird_draws, bigbird_eval, kernels_agree, results, memory_ratio, flex_split,
                     window_timing, window, linformer_errors, rank, head_cache, lsh_tiles, causal_timing=None,
                     reach_table=None):
    """The closing lines of notebook 02, each computed from the tables the notebook made on the way."""
    at = densities[densities.n == densities.n.max()].set_index("pattern")
    once, repeated = bigbird_eval.values()
    pairs = at["token density"]
    tile_share = at["128-tile density"]
    lines = [f"At n = {densities.n.max()} the dilated window touches {tile_share['dilated'] / tile_share['band']:.1f} x "
             f"the tiles of the band for the same pairs; random attention keeps {pairs['band'] / pairs['random']:.0f} x "
             "fewer pairs than the band and touches every tile.",
             "transformers' Longformer and BigBird attend exactly our patterns. In training mode BigBird draws its "
             f"random blocks from the first {bigbird_draws[-1]['last token a random block covers']} tokens at "
             f"n = {bigbird_draws[-1]['n']}; in eval mode all its random blocks are block 0 (output "
             f"{'within 1e-6' if repeated < 1e-6 else f'{repeated:.0e} away'} of block 0 counted 1 + r times, {once:.3f} from plain window + global attention).",
             f"All four kernels agree with the float64 reference to 1e-5 on every pattern: {bool(kernels_agree.all().all())}"]
    lines += kernel_summary(results, memory_ratio, [p for p in results.pattern.unique() if p in memory_ratio.index])
    flex_threads = results[results.kernel == "flex"].threads.iloc[0] if "threads" in results else None
    beyond = flex_split.index[flex_split["skipping, lowest"] > 1].tolist()
    full_only = (flex_split.index[flex_split["partial share"] == 0].tolist() if "partial share" in flex_split else [])
    lines.append(f"Compiled flex{_on_threads_text(flex_threads) if flex_threads is not None else ''} computed a tile at "
                 f"{flex_split['tile speed vs SDPA'].iloc[0]:.2f} of dense SDPA's speed and skipped, by the median of its "
                 f"rounds, at {flex_split.skipping.min():.2f}-{flex_split.skipping.max():.2f} of its own ideal across the "
                 f"patterns; {_smaller_factor_text(flex_split)}.")
    if "partial share" in flex_split:
        lines.append("Compiled flex, share of partial tiles (median skipping): " + ", ".join(
                     f"{p} {row['partial share']:.2f} ({row.skipping:.2f})"
                     for p, row in flex_split.sort_values("partial share").iterrows())
                     + "".join(f"; {p} keeps only full tiles, so the split predicts skipping near 1: rounds "
                               f"{flex_split.loc[p, 'skipping, lowest']:.2f}-{flex_split.loc[p, 'skipping, highest']:.2f}"
                               for p in full_only) + ".")
    if beyond:
        lines.append(f"Compiled flex skipped above 1 in every round for {', '.join(beyond)}, against the split's premise "
                     "(a tile costs the same in the dense and the sparse run).")
    if reach_table is not None:
        deepest = reach_table.index.max()
        lines.append(f"Pairs connected after {deepest} layers: " + ", ".join(
            f"{name} {share:.2f}" for name, share in reach_table.loc[deepest].items()) + ".")
    if causal_timing is not None:
        lines.append("Dense / causal SDPA time, counted at SDPA's own blocks vs measured: " + "; ".join(
            f"n = {int(row.n)}" + (_on_threads_text(row.threads) if "threads" in row else "")
            + f": {row['dense / causal time, counted']:.2f} vs {row['measured (median)']:.2f}"
            + (f", but the rounds run {row['lowest']:.2f}-{row['highest']:.2f}, which includes no saving at all"
               if "lowest" in row and row["lowest"] <= 1.0 else "")
            for _, row in causal_timing.iterrows()) + ".")
    lines += [line[0].upper() + line[1:] + "." for line in window_reading(window_timing, f"sliding window {window}",
                                                                          causal=causal_timing)]
    lines.append(f"Linformer with segment means at k = {rank}: relative error {linformer_errors.loc[rank, 'random walk']:.3f} "
                 f"on a random walk, {linformer_errors.loc[rank, 'independent tokens']:.2f} on independent tokens.")
    cache = head_cache.set_index("model")["GiB at 131072 tokens"]
    lines.append(f"KV cache at 131072 tokens: Llama 3 70B (GQA) {cache.iloc[3]:.0f} GiB, DeepSeek-V3 (MLA) "
                 f"{cache.iloc[4]:.1f} GiB; LSH sorted by bucket touches {lsh_tiles['sorted by bucket']:.2f} of the "
                 f"tiles instead of {lsh_tiles['as hashed']:.2f}.")
    return lines


# ---------------------------------------------------------------------------------------------------------
# Notebook 02's recall experiment (scripts/sparse_recall.py), the KV-cache table and printed verdicts
# ---------------------------------------------------------------------------------------------------------
def recall_masks(pairs=16, window=4, random_global_seed=0):
    """The five (n, n) boolean masks of ``scripts/sparse_recall.py``, n = 2 * pairs + 1: position 0 is one extra
    learned token, then ``pairs`` key-value positions, then ``pairs`` query positions. "band": the positions within
    ``window`` on each side (the extra token sees and is seen by itself only); "band + 1 global token": the extra
    token global; "band + queries global": the query positions global; "band + {pairs} random global": as many
    global positions as queries, drawn at random among the 2 * pairs positions (``torch.randperm`` with a generator
    seeded ``random_global_seed``: the placement); "dense": every pair."""
    pairs = _check_int("pairs", pairs, 1)
    window = _check_int("window", window)
    n = 2 * pairs + 1
    drawn = torch.randperm(2 * pairs, generator=torch.Generator().manual_seed(random_global_seed))[:pairs] + 1
    band_ = dense_mask(band(window), n)[0]
    band_[0, 1:] = band_[1:, 0] = False  # the extra token is in nobody's band and sees only itself
    return {"band": band_,
            "band + 1 global token": dense_mask(or_masks(band(window), global_tokens(0)), n)[0],
            "band + queries global": band_ | dense_mask(global_tokens(*range(pairs + 1, n)), n)[0],
            f"band + {pairs} random global": band_ | dense_mask(global_tokens(*sorted(drawn.tolist())), n)[0],
            "dense": torch.ones(n, n, dtype=torch.bool)}


def recall_table(record, comparisons=()):
    """Read the record of ``scripts/sparse_recall.py``. Returns (per_sequence, table, lines): per mask the recall of
    each test sequence averaged over the seeds, and over the placements for a mask trained on several random
    placements (the items of the intervals and of the paired tests); a table with each mask's share of pairs
    kept, the share of test queries whose pair sits in the query's own row of the mask (reachable in one layer),
    recall over seeds and a bootstrap interval over the test sequences (averaged over placements where there are
    several); and printed lines: the command, chance, two rules that never look at a query (the value most
    frequent in the validation answers, chosen there and scored on test; the value most frequent among the
    sequence's own pairs), for a mask with several placements its recall (mean, lowest and highest seed), share of
    pairs kept and share of queries that see their pair per placement, and a paired bootstrap for each (a, b) in
    ``comparisons``."""
    import numpy as np
    import pandas as pd

    from utils import associative_recall as ar
    from utils import evaluation as ev

    settings, splits = record["settings"], record["splits"]
    p = settings["pairs"]
    runs = pd.DataFrame(record["runs"])
    per_sequence = {mask: np.mean([np.asarray(c) / p for c in group.test_correct], axis=0)
                    for mask, group in runs.groupby("mask", sort=False)}
    task = ar.RecallTask(p, settings["n_keys"], settings["n_values"])
    draw = {split: task.batch(settings["test_sequences"], torch.Generator().manual_seed(splits[f"{split}_seed"]))
            for split in ("validation", "test")}
    keys, values, _, targets = draw["test"]
    constant = draw["validation"][3].flatten().mode().values  # the most frequent answer on validation
    own_mode = values[:, :p].mode(dim=1).values[:, None]  # the most frequent value among each sequence's pairs
    pair_of = (keys[:, p:, None] == keys[:, None, :p]).float().argmax(-1)  # which pair each query asks for
    if "placement" not in runs:
        runs["placement"] = None
    runs["placement"] = runs.placement.astype(object).where(runs.placement.notna(), None)

    def sees_pair(mask, placement):  # share of test queries whose pair is in their own row of the mask
        drawn = recall_masks(p, settings["window"], 0 if placement is None else int(placement))[mask]
        return drawn[torch.arange(p + 1, 2 * p + 1), 1 + pair_of].float().mean().item()

    rows, placement_lines = [], []
    for mask, group in runs.groupby("mask", sort=False):
        placements = list(dict.fromkeys(group.placement))
        recall = [sum(c) / (len(c) * p) for c in group.test_correct]
        spread = str(ev.over_seeds(recall, percent=True, digits=1))
        if len(placements) > 1:
            spread = spread.replace(f"over {len(group)} seeds",
                                    f"over {len(placements)} placements x {group.seed.nunique()} seeds")
            placement_lines.append(f"{mask}, per placement of its global tokens (test recall: mean over its seeds, "
                                   "and the lowest to the highest seed):")
            for at in placements:
                own = np.array(recall)[(group.placement == at).to_numpy()]
                placement_lines.append(f"  placement {int(at)}: test recall {own.mean():.1%} ({own.min():.1%} to "
                                       f"{own.max():.1%} over {len(own)} seeds), pairs kept "
                                       f"{group.mask_density[group.placement == at].iloc[0]:.3f}, queries that see "
                                       f"their pair {sees_pair(mask, at):.3f}")
        rows.append({"mask": mask, "pairs kept": group.mask_density.mean(),
                     "queries that see their pair": float(np.mean([sees_pair(mask, at) for at in placements])),
                     "test recall over seeds": spread,
                     "95% interval over sequences": str(ev.bootstrap(per_sequence[mask], percent=True))})
    lines = [f"{record['command']} | chance {1 / settings['n_values']:.1%}",
             f"rules that never look at the query: the most frequent validation answer {(targets == constant).float().mean().item():.1%}, "
             f"the most frequent value among the sequence's own pairs {(targets == own_mode).float().mean().item():.1%}",
             *placement_lines]
    lines += [f"{a} minus {b}: {ev.paired_bootstrap(per_sequence[a], per_sequence[b], percent=True)}"
              for a, b in comparisons]
    return per_sequence, pd.DataFrame(rows), lines


def kv_cache_table(configs, tokens=(8192, 131072)):
    """Per transformers decoder configuration (name -> config) and context length: the KV cache (16-bit, MiB) if
    every layer were global, with the configuration's windowed or chunked layers (``layer_windows``), and the share
    kept."""
    import pandas as pd

    rows = []
    for name, config in configs.items():
        windows = layer_windows(config)
        shape = dict(layers=config.num_hidden_layers, kv_heads=config.num_key_value_heads,
                     head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        for n in tokens:
            full_cache, windowed_cache = kv_cache_mib(n, **shape), kv_cache_mib(n, **shape, windows=windows)
            rows.append({"model": name, "windowed layers": f"{sum(w is not None for w in windows)}/{len(windows)}",
                         "window": max(w for w in windows if w), "tokens": n, "all global (MiB)": full_cache,
                         "with windows (MiB)": windowed_cache, "kept": windowed_cache / full_cache})
    return pd.DataFrame(rows)


def _range_text(low, high):
    """'0.59-0.87', or one number where both ends print the same."""
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"


def _ranges_apart(a_low, a_high, b_low, b_high):
    """'lower', 'higher' or None: where the range (b_low, b_high) lies against (a_low, a_high)."""
    if b_high < a_low:
        return "lower"
    if b_low > a_high:
        return "higher"
    return None


def _smaller_factor_text(flex_split):
    """Which of compiled flex's two factors (``flex_skipping``) is the smaller for each pattern, by the medians; with
    the tile speed's rounds, each pattern's skipping rounds too, and where the two ranges overlap, which says that
    this run cannot tell the two factors apart for that pattern."""
    tile = flex_split["tile speed vs SDPA"].iloc[0]
    ranged = "tile speed, lowest" in flex_split and "skipping, lowest" in flex_split
    spread = (f", rounds {flex_split['tile speed, lowest'].iloc[0]:.2f}-{flex_split['tile speed, highest'].iloc[0]:.2f}"
              if ranged else "")

    def rounds(row):
        if not ranged:
            return ""
        side = _ranges_apart(row["tile speed, lowest"], row["tile speed, highest"], row["skipping, lowest"],
                             row["skipping, highest"])
        return (f", rounds {row['skipping, lowest']:.2f}-{row['skipping, highest']:.2f}"
                + ("" if side else ", overlapping the tile speed's"))

    return (f"the smaller factor by the medians (tile speed {tile:.2f}{spread}): " + ", ".join(
        f"{pattern} {'the skipping' if row.skipping < tile else 'the tile speed'} (skipping {row.skipping:.2f}{rounds(row)})"
        for pattern, row in flex_split.iterrows()))


def _paired(flex_split):
    """Whether a ``flex_skipping`` table's skipping ranges come from dense and sparse flex timed in the same rounds."""
    return bool(flex_split.attrs.get("paired", False))


def flex_verdicts(flex_split, masked="random 2%", pairs=()):
    """Printed verdicts on a ``flex_skipping`` table. First, what masking costs: the pattern ``masked`` computes
    every tile, so 1 / its skipping factor is the cost of a partial tile (evaluated with the mask function) over a
    full one, and only a range from the rounds that lies wholly above 1 says that masking costs more.
    Second, which of the two factors is the smaller for each pattern, by the medians. With a ``partial share``
    column (``partial_share`` per pattern), each pattern's share of partial tiles beside its median skipping, and
    the skipping that ``masked``'s cost per partial tile predicts for each other pattern, 1 / (1 - s + s c), as a
    range from ``masked``'s cheapest to its costliest round (or combination), and whether the pattern's rounds lie
    wholly outside that range ("apart") or overlap it. Then the same rule as for the masking cost: a pattern is flagged only when
    its skipping lies above 1 in every round (or combination of rounds), kept tiles that cost less each than in the
    dense run, against the split's premise that a tile costs the same in both runs. Then, for each (a, b) in
    ``pairs``, whether b's skipping range lies wholly below or above a's, or overlaps it."""
    at = flex_split
    low, high = 1 / at.loc[masked, "skipping, highest"], 1 / at.loc[masked, "skipping, lowest"]
    rounds = "round" if _paired(at) else "combination of rounds"
    if low > 1:
        verdict = f"more than a full one in every {rounds}"
    elif high < 1:
        verdict = f"less than a full one in every {rounds}"
    else:
        verdict = "a range that holds 1: this run cannot say that masking costs flex anything"
    cost = 1 / at.loc[masked, "skipping"]
    lines = [f"{masked} computes every tile: a partial tile with its mask function cost flex "
             f"{cost:.2f} x a full one ({'rounds' if _paired(at) else 'rounds combined'} "
             f"{low:.2f}-{high:.2f} x), {verdict}",
             _smaller_factor_text(at)]
    if "partial share" in at:
        by_share = at.sort_values("partial share")
        lines.append("share of kept tiles that are partial, and median skipping: " + ", ".join(
            f"{pattern} {row['partial share']:.2f} ({row.skipping:.2f})" for pattern, row in by_share.iterrows()))
        share = by_share["partial share"]
        fewest, most = 1 / (1 - share + share * high), 1 / (1 - share + share * low)  # every partial tile at the costliest / cheapest round's price
        readings = []
        for pattern, row in by_share.iterrows():
            if pattern == masked:
                continue
            rounds_low, rounds_high = row["skipping, lowest"], row["skipping, highest"]
            side = _ranges_apart(fewest[pattern], most[pattern], rounds_low, rounds_high)
            readings.append(f"{pattern} {_range_text(fewest[pattern], most[pattern])} against {rounds_low:.2f}-"
                            f"{rounds_high:.2f} ({f'rounds {side} than predicted, apart' if side else 'the ranges overlap'})")
        lines.append(f"skipping predicted from {masked}'s cost per partial tile ({low:.2f}-{high:.2f} x), against the "
                     "rounds: " + ", ".join(readings))
    beyond = at[at["skipping, lowest"] > 1]
    lines.append(("skipping above 1 in every " + rounds + " for " + ", ".join(
        f"{pattern} ({row['skipping, lowest']:.2f}-{row['skipping, highest']:.2f})" for pattern, row in beyond.iterrows())
        + ": kept tiles that cost less each than in the dense run, against the split's premise that a tile costs the "
        "same in both runs") if len(beyond) else
        f"no pattern's skipping lies above 1 in every {rounds}: nothing here contradicts the split's premise that a "
        "tile costs the same in both runs")
    for a, b in pairs:
        side = _ranges_apart(at.loc[a, "skipping, lowest"], at.loc[a, "skipping, highest"],
                             at.loc[b, "skipping, lowest"], at.loc[b, "skipping, highest"])
        lines.append(f"skipping, {b} {at.loc[b, 'skipping, lowest']:.2f}-{at.loc[b, 'skipping, highest']:.2f} against "
                     f"{a} {at.loc[a, 'skipping, lowest']:.2f}-{at.loc[a, 'skipping, highest']:.2f}: "
                     + (f"{b} {side}, a difference this run can see" if side else
                        "the ranges overlap, no difference this run can see"))
    return lines


def window_reading(timing, pattern, causal=None):
    """What a ``time_windows`` table shows for one pattern: at which lengths the block-sparse kernel beat causal SDPA
    in every round, lost in every round, or met rounds that disagree (median speedup and ideal at each), then
    ``share_trend``'s line on how its share of its own ideal moves with n, then the lengths where some round came
    out above its own ideal. With the causal table (``causal``), a first line gives the largest gap between the
    counted and the median dense / causal time across lengths (to one decimal of a percent), and the lengths where the
    median exceeds
    2n / (n + 1), what computing only the unmasked pairs would give: no kernel can do that, so at such a length the
    rounds measure the load on the machine, and so do the window's rounds paired with the same causal calls."""
    rows = timing[timing.pattern == pattern].sort_values("n")
    if rows.empty:
        raise ValueError(f"window_reading: no rows for {pattern!r}")
    lines = []
    if causal is not None:
        beyond = [f"n = {int(r.n)} (median {r['measured (median)']:.2f} against at most {2 * r.n / (r.n + 1):.2f}, "
                  f"rounds {r['lowest']:.2f}-{r['highest']:.2f})"
                  for _, r in causal.iterrows() if r["measured (median)"] > 2 * r.n / (r.n + 1)]
        counted = "dense / causal time, counted"
        gap = ""
        if counted in causal:
            gaps = (causal["measured (median)"] / causal[counted] - 1).abs()
            worst = causal.loc[gaps.idxmax()]
            gap = (f"the largest gap between the median and the count across lengths is {gaps.max():.1%} (n = "
                   f"{int(worst.n)}: {worst['measured (median)']:.2f} against {worst[counted]:.2f}); ")
        lines.append(f"dense / causal SDPA: {gap}"
                     + ("beyond what skipping every masked pair allows at " + ", ".join(beyond)
                        + ": there the rounds measure the load, not the kernel" if beyond else
                        "no median beyond what skipping every masked pair allows"))
    by_verdict = {}
    for _, row in rows.iterrows():
        by_verdict.setdefault(row.verdict, []).append(
            f"n = {int(row.n)} ({row['speedup (median)']:.2f} x, ideal {row.ideal:.2f})")
    where = _on_threads_text(rows.threads.iloc[0]) if "threads" in rows else ""
    above = [f"n = {int(r.n)} ({r.highest / r.ideal:.2f})" for _, r in rows.iterrows() if r.highest > r.ideal]
    return lines + [f"{pattern}{where}, block-sparse against causal SDPA: "
                    + "; ".join(f"{verdict} at {', '.join(items)}" for verdict, items in by_verdict.items()),
                    share_trend(timing, pattern),
                    f"{pattern}: " + ("a round above its own ideal at " + ", ".join(above)
                                      + ", faster than its ideal: that round's causal SDPA call was slowed (the load), or "
                                      "the kernel computed its tiles faster than causal SDPA"
                                      if above else "no round above its own ideal")]
