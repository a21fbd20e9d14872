"""One call a figure: the plotting helpers every notebook shares.

Each helper draws on a new figure (or on `ax` when given), returns the Figure or Axes, and with
`save="name.png"` also writes images/name.png. Notebooks end plotting cells with plt.show().
"""
import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from .core import images_path

__all__ = ["set_figsize", "plot_differences", "label_points", "plot_power_law", "show_masks", "show_images",
           "plot_waveform_spectrogram", "plot_heatmap", "plot_benchmark", "plot_training",
           "save_figure", "figure_description", "describe_inline_figures", "plot_wav2vec_u"]


def set_figsize(width=6.0, height=4.0):
    """Default size of new figures, in inches."""
    plt.rcParams["figure.figsize"] = (width, height)


def save_figure(fig, name):
    """Write `fig` to images/<name> as PNG; returns the path."""
    if not str(name).endswith(".png"):
        raise ValueError(f"save_figure: figures are saved as PNG, got {name!r}")
    path = images_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
    return path


def _one_line(text):
    return " ".join(str(text).split())


def figure_description(fig, limit=300):
    """One line that names what `fig` shows, from its own titles and axis labels, or None.

    The figure's title, then each panel's title ("; " between panels, the first 8, then how many
    more); a figure without titles is named by its first panel's axis labels. It is the text a
    screen reader gives for the picture where a tool reads it (`describe_inline_figures`).
    """
    title = _one_line(fig.get_suptitle()) if hasattr(fig, "get_suptitle") else ""
    panels = []
    for ax in fig.axes:
        name = " ".join(_one_line(ax.get_title(loc)) for loc in ("left", "center", "right")
                        if ax.get_title(loc).strip())
        if name:
            panels.append(name)
    if len(panels) > 8:
        panels = panels[:8] + [f"and {len(panels) - 8} more panels"]
    parts = [p for p in (title, "; ".join(panels)) if p]
    if not parts and fig.axes:
        ax = fig.axes[0]
        x, y = _one_line(ax.get_xlabel()), _one_line(ax.get_ylabel())
        parts = [f"{y} against {x}" if x and y else x or y]
    text = ": ".join(p for p in parts if p)
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def describe_inline_figures():
    """Give every figure a notebook shows inline an "alt" entry in its output's metadata.

    The text is `figure_description(fig)`. nbconvert's classic HTML template reads it as the image's
    alt text; JupyterLab and Colab show the picture without it. A no-op outside IPython's inline
    backend (matplotlib_inline), and when called again.
    """
    try:
        from matplotlib_inline import backend_inline
    except ImportError:
        return
    original = backend_inline._fetch_figure_metadata
    if getattr(original, "describes_figures", False):
        return

    def fetch(fig):
        metadata = dict(original(fig) or {})
        description = figure_description(fig)
        if description:
            metadata["alt"] = description
        return metadata or None

    fetch.describes_figures, fetch.wrapped = True, original
    backend_inline._fetch_figure_metadata = fetch


def _new_axes(ax, figsize=None):
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def _finish(fig, save):
    if save:
        save_figure(fig, save)
    return fig


def _text_box(annotation, renderer):
    """The display box of an annotation's text alone (not its leader line), at its current offset."""
    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def label_points(ax, x, y, labels, fontsize=8, max_tries=40, **kwargs):
    """Label the points (x[i], y[i]) so that no two labels overlap.

    Each label starts just right of its point; if it would overlap a label already placed it
    takes the nearest free slot above or below (0, +h, -h, +2h, ... with h its height), and a
    thin line joins it to its point. Returns the Text objects.
    """
    x, y, labels = list(x), list(y), [str(s) for s in labels]
    if not len(x) == len(y) == len(labels):
        raise ValueError(f"label_points: x, y and labels differ in length "
                         f"({len(x)}, {len(y)}, {len(labels)})")
    renderer = ax.figure.canvas.get_renderer()
    to_points = 72.0 / ax.figure.dpi
    # The points are obstacles too: a small box around each marker.
    centres = ax.transData.transform(np.c_[x, y])
    placed = [Bbox.from_extents(cx - 4, cy - 4, cx + 4, cy + 4) for cx, cy in centres]
    order = np.argsort(np.asarray(ax.transData.transform(np.c_[x, y]))[:, 1], kind="stable")
    texts = [None] * len(labels)
    for i in order:
        text = ax.annotate(labels[i], (x[i], y[i]), xytext=(4, 0), textcoords="offset points",
                           fontsize=fontsize, va="center",
                           arrowprops=dict(arrowstyle="-", lw=0.4, color="0.6", shrinkA=0,
                                           shrinkB=2), **kwargs)
        box = _text_box(text, renderer)
        height = box.height * 1.1 * to_points
        for k in range(max_tries):
            dy = (k + 1) // 2 * height * (1 if k % 2 else -1)
            text.set_position((4, dy))
            box = _text_box(text, renderer)
            if not any(box.overlaps(other) for other in placed):
                break
        placed.append(box)
        texts[i] = text
    return texts


def plot_power_law(x, series, *, xlabel, ylabel, title=None, ax=None, save=None, styles=None):
    """Log-log lines: `series` maps a name to y (sharing x) or to its own (x, y) pair."""
    fig, ax = _new_axes(ax)
    for name, values in series.items():
        xs, ys = values if isinstance(values, tuple) else (x, values)
        ax.loglog(xs, ys, label=name, **(styles or {}).get(name, {}))
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="both", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    _finish(fig, save)
    return ax


def _grid(n, ncols, size):
    ncols = ncols or min(n, 5)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def show_masks(masks, *, ncols=None, title=None, size=2.6, save=None):
    """Attention masks side by side: `masks` maps a name to a 2-D boolean array (query x key).

    Each panel's title gives the name and the fraction of positions attended (density).
    """
    if not masks:
        raise ValueError("show_masks: no masks given")
    fig, axes = _grid(len(masks), ncols, size)
    for ax, (name, mask) in zip(axes, masks.items()):
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"show_masks: mask {name!r} must be 2-D, got shape {mask.shape}")
        ax.imshow(mask, cmap="Blues", vmin=0, vmax=1.3, interpolation="nearest")
        ax.set_title(f"{name}\ndensity {mask.mean():.1%}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_xlabel("key", fontsize=8), ax.set_ylabel("query", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, save)


def show_images(images, *, titles=None, ncols=None, size=2.2, cmap=None, save=None):
    """A grid of images (PIL images or arrays), with optional titles."""
    images = list(images)
    if not images:
        raise ValueError("show_images: no images given")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"show_images: {len(titles)} titles for {len(images)} images")
    fig, axes = _grid(len(images), ncols, size)
    for i, (ax, img) in enumerate(zip(axes, images)):
        arr = np.asarray(img)
        ax.imshow(arr, cmap=cmap or ("gray" if arr.ndim == 2 else None))
        ax.axis("off")
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    fig.tight_layout()
    return _finish(fig, save)


def plot_waveform_spectrogram(wave, sampling_rate, *, log_mel=None, title=None, hop_length=160,
                              save=None):
    """The waveform over time and, below it, a log-mel spectrogram on the same time axis.

    `log_mel` is a (mel bins x frames) array; if None it is computed with transformers'
    audio_utils (25 ms windows, 10 ms hop, 80 mel bins, slaney mel scale from 0 Hz to half the
    sampling rate). The frequency axis names the bin edges in Hz; a colour bar gives the power in dB.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"plot_waveform_spectrogram: need a 1-D non-empty waveform, got {wave.shape}")
    if log_mel is None:
        log_mel = log_mel_spectrogram(wave, sampling_rate, hop_length=hop_length)
    duration = len(wave) / sampling_rate
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.5), sharex=True,
                                      gridspec_kw={"height_ratios": [1, 1.6]})
    top.plot(np.arange(len(wave)) / sampling_rate, wave, lw=0.5)
    top.set(ylabel="amplitude", title=title)
    image = bottom.imshow(log_mel, origin="lower", aspect="auto", cmap="magma",
                          extent=[0, duration, 0, log_mel.shape[0]])
    bins = np.arange(0, log_mel.shape[0] + 1, 20)
    bottom.set(xlabel="time (s)", ylabel="frequency (Hz, mel-spaced)", yticks=bins,
               yticklabels=[f"{hz:,.0f}" for hz in mel_bin_hertz(bins, log_mel.shape[0], sampling_rate)])
    bar = fig.colorbar(image, ax=[top, bottom], label="power (dB)", fraction=0.04, pad=0.02)
    panel, strip = bottom.get_position(), bar.ax.get_position()
    bar.ax.set_position([strip.x0, panel.y0, strip.width, panel.height])  # beside the spectrogram only
    return _finish(fig, save)


def mel_bin_hertz(edges, n_mels, sampling_rate):
    """The frequencies (Hz) at the edges 0..n_mels between the rows of `log_mel_spectrogram`.

    Its filter bank (transformers' `mel_filter_bank`) centres filter k at (k + 1) / (n_mels + 1) of
    the mel range from 0 Hz to sampling_rate / 2 (slaney scale); the edge between rows k - 1 and k
    is taken halfway in mel between their centres, and the outer edges are 0 Hz and sampling_rate / 2."""
    from transformers.audio_utils import hertz_to_mel, mel_to_hertz

    edges = np.asarray(edges, dtype=float)
    top = hertz_to_mel(sampling_rate / 2, mel_scale="slaney")
    hertz = mel_to_hertz((edges + 0.5) / (n_mels + 1) * top, mel_scale="slaney")
    return np.where(edges <= 0, 0.0, np.where(edges >= n_mels, sampling_rate / 2, hertz))


def log_mel_spectrogram(wave, sampling_rate, n_mels=80, hop_length=160, win_length=400):
    """A log-mel spectrogram (mel bins x frames) computed with transformers.audio_utils."""
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    mel = mel_filter_bank(num_frequency_bins=win_length // 2 + 1, num_mel_filters=n_mels,
                          min_frequency=0.0, max_frequency=sampling_rate / 2,
                          sampling_rate=sampling_rate, norm="slaney", mel_scale="slaney")
    return spectrogram(np.asarray(wave, dtype=np.float32), window_function(win_length, "hann"),
                       frame_length=win_length, hop_length=hop_length, power=2.0,
                       mel_filters=mel, log_mel="dB", db_range=80.0)


def plot_heatmap(matrix, row_labels, col_labels, *, title=None, fmt=".2f", cmap="viridis",
                 annotate=True, ax=None, save=None, xlabel=None, ylabel=None, per_row=False, cbar_label=None,
                 vmin=None, vmax=None, colorbar=True):
    """A labelled heatmap (similarity matrices, confusion matrices, token channels).

    With `per_row`, every row gets a colour scale of its own, from its smallest value to its
    largest, for rows that measure different things (ids, ranks, bit fields): the colours then
    compare cells within a row only, there is no colour bar, and the numbers are written in the
    cells (`annotate` must stay on). `cbar_label` names what the colour bar measures. `vmin` and `vmax`
    fix the colour scale (e.g. 0 and 1 for probabilities, so that panels side by side share it); with
    `colorbar` False a panel leaves the colour bar to a neighbour that shares its scale."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"plot_heatmap: matrix shape {matrix.shape} does not match "
                         f"{len(row_labels)} row and {len(col_labels)} column labels")
    if per_row and not annotate:
        raise ValueError("plot_heatmap: per_row colours mean nothing without the numbers; keep annotate=True")
    fig, ax = _new_axes(ax, figsize=(max(4, 0.6 * len(col_labels) + 2),
                                     max(3, 0.45 * len(row_labels) + 1.5)))
    shown = matrix
    if per_row:  # each row scaled to [0, 1] on its own; a constant row is drawn at 0
        low, high = np.nanmin(matrix, axis=1, keepdims=True), np.nanmax(matrix, axis=1, keepdims=True)
        shown = np.where(high > low, (matrix - low) / np.where(high > low, high - low, 1), 0.0)
    if per_row and (vmin is not None or vmax is not None):
        raise ValueError("plot_heatmap: per_row scales every row on its own; vmin and vmax do not apply")
    image = ax.imshow(shown, cmap=cmap, aspect="auto", **({"vmin": 0, "vmax": 1} if per_row else {"vmin": vmin, "vmax": vmax}))
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels], rotation=45, ha="right",
                  fontsize=8)
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels], fontsize=8)
    if annotate:  # white text on dark cells, black on light ones, whatever the colormap
        for (i, j), v in np.ndenumerate(matrix):
            r, g, b, _ = image.cmap(image.norm(shown[i, j]))
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                    color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")
    if not per_row and colorbar:
        bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        if cbar_label:
            bar.set_label(cbar_label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.tight_layout()
    _finish(fig, save)
    return ax


def plot_benchmark(df, *, x="n", y="ms", hue="kernel", style=None, ax=None, save=None,
                   title=None, xlabel=None, ylabel=None, log=True, guides=(), band=None, band_label=None):
    """Benchmark curves, on log-log axes unless `log` is False: one line per `hue`; with `style`,
    each value of that column gets its own line style and marker (o, x, s, ^), the markers after
    the first drawn larger, so that two curves that coincide stay visible one over the other.
    The x-axis spans the measured values and no more; `xlabel` and `ylabel` default to the column names.
    `guides` (log-log only), e.g. (1, 2): thin dotted grey lines of those slopes, growth like n and n^2,
    drawn from the smallest x at the geometric mean of the values measured there, within the data's y range,
    each labelled n^slope where it leaves the axes. `band`: a column holding, per row, several measurements of
    the same point (e.g. one per pass); their range is shaded around each line, labelled "range of `band_label`"
    (default: the column's name). Guide labels sit just inside the axes. The legend sits outside the
    axes, on the right, so that it hides no data."""
    missing = [c for c in (x, y, hue, style, band) if c is not None and c not in df.columns]
    if missing:
        raise ValueError(f"plot_benchmark: columns {missing} not in the data ({list(df.columns)})")
    fig, ax = _new_axes(ax, figsize=(8.5, 4.2))
    data = df.dropna(subset=[y])
    looks = [("-", "o", 3), ("--", "x", 7), (":", "s", 6), ("-.", "^", 6)]
    look_of = {v: looks[i % 4] for i, v in enumerate(sorted(data[style].unique()))} if style else {}
    for keys, group in data.groupby([hue] + ([style] if style else []), sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        group = group.sort_values(x)
        label = " / ".join(str(k) for k in keys)
        line, marker, size = look_of.get(keys[-1], looks[0]) if style else looks[0]
        drawn = ax.plot(group[x], group[y], ls=line, marker=marker, ms=size, label=label)[0]
        if band is not None:
            values = group[band].tolist()
            ax.fill_between(group[x], [min(v) for v in values], [max(v) for v in values],
                            color=drawn.get_color(), alpha=0.2, lw=0, label=f"{label}: range of {band_label or band}")
    if log:
        ax.set(xscale="log", yscale="log")
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y, title=title)
    measured = sorted(data[x].unique())
    if guides and log and len(measured) > 1:
        import numpy as np

        bottom, top = ax.get_ylim()
        start = float(np.exp(np.log(data[data[x] == measured[0]][y].astype(float)).mean()))
        span = np.array([measured[0], measured[-1]], dtype=float)
        for slope, look in zip(guides, [(0, (1, 2)), (0, (1, 5)), (0, (3, 3))]):
            ax.plot(span, start * (span / span[0]) ** slope, color="grey", lw=1, ls=look,
                    label=f"guide: slope {slope:g}, $\\propto n^{{{slope:g}}}$")
            end = span[1] if slope <= 0 else min(span[1], span[0] * (top / start) ** (1 / slope))
            ax.annotate(f"$n^{{{slope:g}}}$", (end, start * (end / span[0]) ** slope), xytext=(-3, -3),
                        textcoords="offset points", ha="right", va="top", color="grey", fontsize=8)
        ax.set_ylim(bottom, top)
    if len(measured) > 1:
        pad = (measured[-1] / measured[0]) ** 0.03 if log else 1
        margin = 0 if log else 0.02 * (measured[-1] - measured[0])
        ax.set_xlim(measured[0] / pad - margin, measured[-1] * pad + margin)
    if len(measured) <= 12:  # label the measured sizes themselves (2k, not 2 x 10^3 next to 3 x 10^3)
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

        ax.xaxis.set_major_locator(FixedLocator(measured))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _compact_size(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    fig.tight_layout()
    _finish(fig, save)
    return ax


def _compact_size(value):
    """A power-of-two size as people write it: 512, 1k, 16k (k = 1024)."""
    value = int(round(value))
    return f"{value // 1024}k" if value >= 1024 and value % 1024 == 0 else str(value)


def plot_training(history, metric=None, *, loss_label="training loss", metric_label=None,
                  logy=False, title=None, ax=None, save=None):
    """A training run in one figure: the loss at every step (left axis, with its running mean)
    and `metric` where it was evaluated (right axis, as markers).

    `history` is the DataFrame ``utils.train`` returns (columns step, loss and the metrics that
    its eval_fn reported). Returns the loss Axes.
    """
    needed = ["step", "loss"] + ([metric] if metric else [])
    missing = [c for c in needed if c not in history.columns]
    if missing:
        raise ValueError(f"plot_training: history has no column {missing[0]!r} "
                         f"(it has {list(history.columns)})")
    fig, ax = _new_axes(ax, figsize=(6.5, 3.5))
    window = max(1, len(history) // 40)
    ax.plot(history["step"], history["loss"], color="tab:blue", lw=0.6, alpha=0.35)
    ax.plot(history["step"], history["loss"].rolling(window, min_periods=1).mean(),
            color="tab:blue", lw=1.5,
            label=f"{loss_label} (per step)" if window == 1 else f"{loss_label} (mean of {window} steps)")
    ax.set(xlabel="training step", title=title, yscale="log" if logy else "linear")
    ax.set_ylabel(loss_label, **({"color": "tab:blue"} if metric else {}))  # coloured only beside a second axis
    if metric:
        evaluated = history.dropna(subset=[metric])
        right = ax.twinx()
        right.plot(evaluated["step"], evaluated[metric], "o-", color="tab:orange", ms=4, label=metric_label or metric)
        right.set_ylabel(metric_label or metric, color="tab:orange")
        low = float(evaluated[metric].min()) if len(evaluated) else 0.0
        right.set_ylim(min(0.0, low) if low < 0.5 else 0.5 * low, 1.02 if low >= 0 else None)
    fig.tight_layout()
    _finish(fig, save)
    return ax


def plot_differences(panels, *, xlabel="difference (percentage points)", title=None, save=None):
    """Paired differences with their intervals, a dot and a bar per row, one panel per kind of comparison.

    `panels` maps a panel title to {row label: utils.evaluation.Comparison}; every panel has the same rows, drawn
    top to bottom in the first panel's order, and a thin line separates rows whose labels differ before ":".
    A dashed line marks zero, no difference. Comparisons made with ``percent=True`` are drawn in points.
    Returns the figure."""
    if not panels:
        raise ValueError("plot_differences: no panels")
    rows = list(next(iter(panels.values())))
    for name, comparisons in panels.items():
        if list(comparisons) != rows:
            raise ValueError(f"plot_differences: panel {name!r} has the rows {list(comparisons)}, the first panel {rows}")
        for label, c in comparisons.items():
            if not all(hasattr(c, a) for a in ("difference", "low", "high", "percent")):
                raise TypeError(f"plot_differences: {label!r} in panel {name!r} is a {type(c).__name__}, not a Comparison")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels) + 2.4, 0.3 * len(rows) + 1.5),
                             sharey=True, squeeze=False)
    y = np.arange(len(rows))[::-1]
    groups = [label.split(":")[0] for label in rows]
    breaks = [y[k] + 0.5 for k in range(1, len(rows)) if groups[k] != groups[k - 1]]
    for ax, (name, comparisons) in zip(axes[0], panels.items()):
        scale = np.array([100.0 if c.percent else 1.0 for c in comparisons.values()])
        mid, low, high = (scale * np.array([getattr(c, a) for c in comparisons.values()]) for a in ("difference", "low", "high"))
        ax.errorbar(mid, y, xerr=[mid - low, high - mid], fmt="o", ms=4, capsize=3, color="tab:blue")
        ax.axvline(0, color="grey", ls="--", lw=1)
        for b in breaks:
            ax.axhline(b, color="lightgrey", lw=0.8)
        ax.set(title=name, xlabel=xlabel, ylim=(-0.6, len(rows) - 0.4))
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, rows)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _finish(fig, save)
    return fig


def plot_wav2vec_u(save=None):
    """A schematic of wav2vec-U (Baevski et al., 2021, arXiv:2105.11084), the course's own drawing.

    Top row, the audio side: a frozen wav2vec 2.0's frames, cut into segments where their k-means
    cluster changes and mean-pooled into one vector per segment, which a generator turns into
    phonemes. Bottom row, the text side: unrelated sentences, phonemized. The discriminator sees
    phoneme sequences from both sides and learns to tell them apart; the generator learns to fool
    it. No audio clip is ever paired with its transcript. Returns the Figure.
    """
    from matplotlib.patches import FancyBboxPatch, Rectangle

    fig, ax = plt.subplots(figsize=(11.5, 4.2))
    ax.set(xlim=(0, 12.0), ylim=(0, 4.4))
    ax.axis("off")

    def box(x, y, w, h, text, colour, **kwargs):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="0.3"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9, **kwargs)

    def arrow(start, end, **kwargs):
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "0.2", **kwargs})

    t = np.linspace(0, 1, 300)  # a stand-in waveform, only to show where the audio enters
    ax.plot(0.1 + 1.2 * t, 3.4 + 0.3 * np.sin(60 * t) * np.exp(-((t - 0.5) / 0.3) ** 2), lw=0.8, color="0.2")
    ax.text(0.7, 3.95, "audio, no transcript", ha="center", fontsize=9)
    box(1.6, 3.1, 1.7, 0.6, "wav2vec 2.0\n(pretrained, frozen)", "#dbe9f6")
    clusters = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 1, 1, 1]  # k-means cluster of each 20 ms frame
    colours = plt.get_cmap("Set2").colors
    for k, c in enumerate(clusters):
        ax.add_patch(Rectangle((3.6 + 0.13 * k, 3.25), 0.13, 0.3, fc=colours[c], ec="white", lw=0.5))
    for k in range(1, len(clusters)):  # a segment ends where the cluster changes
        if clusters[k] != clusters[k - 1]:
            ax.plot([3.6 + 0.13 * k] * 2, [3.18, 3.62], color="0.1", lw=1.2)
    ax.text(3.6 + 0.065 * len(clusters), 3.95, "frames: k-means clusters\n-> segments, mean-pooled",
            ha="center", fontsize=9)
    box(5.8, 3.1, 1.6, 0.6, "generator\n(one conv layer)", "#fde0c5")
    box(7.8, 3.1, 1.9, 0.6, "generated phonemes\nDH AH K AE T", "#f6f6f6", family="monospace")
    ax.text(0.7, 0.95, "unrelated text", ha="center", fontsize=9)
    box(0.1, 0.3, 1.3, 0.5, '"the dog"', "#f6f6f6")
    box(1.9, 0.3, 1.3, 0.5, "phonemizer", "#e5f2e0")
    box(7.8, 0.25, 1.9, 0.6, "real phonemes\nDH AH D AO G", "#f6f6f6", family="monospace")
    box(10.0, 1.65, 1.85, 0.7, "discriminator:\nreal or generated?", "#f4d6e6")
    arrow((1.35, 3.4), (1.6, 3.4))
    arrow((3.35, 3.4), (3.55, 3.4))
    arrow((3.6 + 0.13 * len(clusters) + 0.05, 3.4), (5.75, 3.4))
    arrow((7.45, 3.4), (7.75, 3.4))
    arrow((1.45, 0.55), (1.85, 0.55))
    arrow((3.25, 0.55), (7.75, 0.55))
    arrow((9.75, 3.2), (10.5, 2.4))
    arrow((9.75, 0.7), (10.5, 1.6))
    ax.annotate("", xy=(6.6, 3.05), xytext=(10.0, 1.9),
                arrowprops={"arrowstyle": "->", "color": "#b03060", "ls": "--", "connectionstyle": "arc3,rad=-0.25"})
    ax.text(6.9, 1.85, "adversarial loss: the generator\nlearns to fool the discriminator",
            fontsize=8.5, color="#b03060", ha="center")
    ax.set_title("wav2vec-U: a GAN maps speech segments to phonemes without paired transcripts", fontsize=10)
    return _finish(fig, save)
