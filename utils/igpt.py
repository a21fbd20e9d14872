"""A small image GPT on scikit-learn's 8 x 8 digits (notebook 04).

iGPT (Chen et al., 2020) reads an image as a sequence of colour tokens in raster order and learns
to predict each pixel from the ones above and to its left. The digits have 17 grey levels (0..16),
so the vocabulary is those 17 levels plus one start-of-image token that is fed in but never
predicted; transformers' `ImageGPTForCausalImageModeling` is built exactly that way (its output
layer has `vocab_size - 1` classes). `scripts/train_igpt.py` trains the checkpoint the notebook
ships in `data/igpt_digits/`.
"""
from __future__ import annotations

import numpy as np
import torch

from .core import data_path
from .vit import DIGITS_MAX, DIGITS_SIZE

NUM_LEVELS = DIGITS_MAX + 1  # grey levels 0..16
SOS = NUM_LEVELS  # the start-of-image token, the last id of the vocabulary
SEQUENCE = DIGITS_SIZE * DIGITS_SIZE  # 64 pixels in raster order
CHECKPOINT_DIR = "igpt_digits"

__all__ = ["NUM_LEVELS", "SOS", "SEQUENCE", "small_igpt_config", "to_tokens", "to_pixels",
           "TokenShift", "pixel_nll", "complete", "reference_completions", "igpt_features", "load_small_igpt",
           "show_completions"]


def small_igpt_config(**overrides):
    """The notebook's image GPT: 17 grey levels + a start token, 64 pixels + the start token,
    four layers of width 64 with four heads."""
    from transformers import ImageGPTConfig

    settings = dict(vocab_size=NUM_LEVELS + 1, n_positions=SEQUENCE + 1, n_embd=64, n_layer=4, n_head=4,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    settings.update(overrides)
    return ImageGPTConfig(**settings)


def to_tokens(pixels) -> torch.Tensor:
    """Digits as (n, 64) grey levels 0..16 -> (n, 65) token ids: the start token, then the pixels row by row."""
    pixels = torch.as_tensor(np.asarray(pixels), dtype=torch.long)
    if pixels.ndim != 2 or pixels.shape[1] != SEQUENCE:
        raise ValueError(f"to_tokens takes (n, {SEQUENCE}) grey levels, got shape {tuple(pixels.shape)}")
    if pixels.min() < 0 or pixels.max() > DIGITS_MAX:
        raise ValueError(f"grey levels must lie in 0..{DIGITS_MAX}, got {int(pixels.min())}..{int(pixels.max())}")
    return torch.cat([torch.full((len(pixels), 1), SOS), pixels], dim=1)


def to_pixels(tokens) -> np.ndarray:
    """Token ids (n, 65) or (n, 64) -> (n, 8, 8) grey levels, dropping the start token."""
    tokens = torch.as_tensor(tokens)
    if tokens.shape[-1] == SEQUENCE + 1:
        tokens = tokens[..., 1:]
    if tokens.shape[-1] != SEQUENCE:
        raise ValueError(f"expected {SEQUENCE} or {SEQUENCE + 1} tokens per image, got {tokens.shape[-1]}")
    if (tokens >= NUM_LEVELS).any():
        raise ValueError("a start token inside the image: these are not generated pixels")
    return tokens.reshape(*tokens.shape[:-1], DIGITS_SIZE, DIGITS_SIZE).numpy()


class TokenShift:
    """Collate (n, 65) token rows into a batch for `utils.train`, each digit moved sideways by a random
    whole number of pixels (-max_shift..max_shift, blank border). Never up or down: the digits fill
    their frame from top to bottom, so a vertical shift would cut strokes off (see RandomShift)."""

    def __init__(self, max_shift: int = 1, seed: int = 0):
        if not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(f"max_shift must be a whole number of pixels >= 0, got {max_shift!r}")
        self.max_shift = max_shift
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, rows):
        tokens = torch.stack(list(rows))
        s = self.max_shift
        if s:
            images = tokens[:, 1:].reshape(-1, DIGITS_SIZE, DIGITS_SIZE)
            padded = torch.nn.functional.pad(images, (s, s), value=0)
            offsets = torch.randint(0, 2 * s + 1, (len(tokens),), generator=self.generator).tolist()
            images = torch.stack([padded[i, :, dx:dx + DIGITS_SIZE] for i, dx in enumerate(offsets)])
            tokens = torch.cat([tokens[:, :1], images.reshape(len(tokens), -1)], dim=1)
        return {"input_ids": tokens, "labels": tokens}


@torch.no_grad()
def pixel_nll(model, tokens, batch_size: int = 512) -> float:
    """Mean negative log-likelihood per pixel in nats (the model's loss) over token rows (n, 65)."""
    model.eval()
    total = 0.0
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start:start + batch_size]
        total += model(input_ids=batch, labels=batch).loss.item() * len(batch)
    return total / len(tokens)


@torch.no_grad()
def complete(model, tokens, *, rows_given: int = 4, num_samples: int = 4, temperature: float = 1.0,
             seed: int = 0) -> np.ndarray:
    """Keep the top `rows_given` rows of each digit (token rows (n, 65)) and let the model sample the
    rest, pixel by pixel, `num_samples` times per digit: returns (n, num_samples, 8, 8) grey levels."""
    if not 0 < rows_given < DIGITS_SIZE:
        raise ValueError(f"rows_given must be in 1..{DIGITS_SIZE - 1}, got {rows_given}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    model.eval()
    torch.manual_seed(seed)
    context = torch.as_tensor(tokens)[:, : 1 + rows_given * DIGITS_SIZE]
    out = model.generate(input_ids=context, attention_mask=torch.ones_like(context), do_sample=True,
                         top_k=0, top_p=1.0, temperature=temperature, max_length=SEQUENCE + 1,
                         num_return_sequences=num_samples, pad_token_id=SOS)
    return to_pixels(out).reshape(len(context), num_samples, DIGITS_SIZE, DIGITS_SIZE)


def reference_completions(donors, given_pixels, *, rows_given: int = 4, num_samples: int = 5,
                          seed: int = 0) -> dict:
    """Two stand-ins for `complete`, to set its completions against: the top `rows_given` rows of each digit in
    `given_pixels` ((n, 64) or (n, 8, 8) grey levels) kept, the rest filled `num_samples` times per digit from the
    digits of `donors` (notebook 04 passes validation digits, which the reader that judges the completions has not
    stored). "nearest top halves": the bottom rows of the `num_samples` donor digits whose top rows are closest
    (Euclidean), the most context a copy can use; "one histogram per position": each missing pixel drawn on its own
    from its position's grey levels in the donor digits (add-one smoothing), no context at all.
    Returns {name: (n, num_samples, 8, 8) grey levels}."""
    if not 0 < rows_given < DIGITS_SIZE:
        raise ValueError(f"rows_given must be in 1..{DIGITS_SIZE - 1}, got {rows_given}")
    train = np.asarray(donors, dtype=np.int64).reshape(-1, SEQUENCE)
    given = np.asarray(given_pixels, dtype=np.int64).reshape(-1, SEQUENCE)
    if num_samples < 1 or num_samples > len(train):
        raise ValueError(f"num_samples must be in 1..{len(train)}, got {num_samples}")
    cut = rows_given * DIGITS_SIZE
    distances = ((given[:, None, :cut] - train[None, :, :cut]) ** 2).sum(-1)
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :num_samples]
    copied = np.repeat(given[:, None], num_samples, axis=1)
    copied[:, :, cut:] = train[nearest][:, :, cut:]
    counts = np.stack([np.bincount(column, minlength=NUM_LEVELS) for column in train.T]) + 1
    rng = np.random.default_rng(seed)
    drawn = np.repeat(given[:, None], num_samples, axis=1)
    for position in range(cut, SEQUENCE):
        drawn[:, :, position] = rng.choice(NUM_LEVELS, size=drawn.shape[:2], p=counts[position] / counts[position].sum())
    shape = (len(given), num_samples, DIGITS_SIZE, DIGITS_SIZE)
    return {"nearest top halves": copied.reshape(shape), "one histogram per position": drawn.reshape(shape)}


@torch.no_grad()
def igpt_features(model, tokens, layer=None, batch_size: int = 512, pool: bool = True):
    """iGPT's linear-probe features: the hidden states after `layer` (default: the middle of the
    stack, where Chen et al. found the best features), averaged over the 64 pixel positions; with
    `pool=False`, the 64 positions' states side by side instead, (n, 64 * width), which keeps where
    each state came from. `layer` may also be several layers (a list or range): then one forward
    pass gives them all, as {layer: features}."""
    n_layer = model.config.n_layer
    several = not (layer is None or isinstance(layer, (int, np.integer)))
    layers = list(layer) if several else [n_layer // 2 if layer is None else layer]
    for k in layers:
        if not 0 <= k <= n_layer:
            raise ValueError(f"layer must be in 0..{n_layer}, got {k}")
    model.eval()
    transformer = getattr(model, "transformer", model)
    chunks = {k: [] for k in layers}
    for start in range(0, len(tokens), batch_size):
        states = transformer(input_ids=tokens[start:start + batch_size], output_hidden_states=True).hidden_states
        for k in layers:
            pixels = states[k][:, 1:]
            chunks[k].append((pixels.mean(dim=1) if pool else pixels.flatten(1)).numpy())
    features = {k: np.concatenate(parts) for k, parts in chunks.items()}
    return features if several else features[layers[0]]


def load_small_igpt(path=None):
    """The shipped image GPT (`data/igpt_digits/`, trained by scripts/train_igpt.py) and its metrics."""
    import json
    from pathlib import Path

    from transformers import ImageGPTForCausalImageModeling

    path = Path(path) if path is not None else data_path(CHECKPOINT_DIR)
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"no image GPT checkpoint in {path}: run scripts/train_igpt.py --out {path}")
    model = ImageGPTForCausalImageModeling.from_pretrained(path)
    metrics_file = path / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return model.eval(), metrics


def show_completions(digits, samples, *, rows_given: int = 4, labels=None, size=1.0, save=None):
    """The iGPT figure for digits: one row per digit, showing the original, the top `rows_given` rows
    the model was given, and its sampled completions (samples: (n, k, 8, 8)); a red line marks
    where the given rows end. All panels share one grey scale, 0..16, ink white on black as in the
    other digit figures; the rows not given are drawn in mid grey."""
    import matplotlib.pyplot as plt

    from .plotting import save_figure

    digits = np.asarray(digits).reshape(-1, DIGITS_SIZE, DIGITS_SIZE)
    samples = np.asarray(samples)
    if samples.ndim != 4 or len(samples) != len(digits):
        raise ValueError(f"samples must be (n, k, 8, 8) for the n = {len(digits)} digits, got {samples.shape}")
    k = samples.shape[1]
    fig, axes = plt.subplots(len(digits), k + 2, figsize=(size * (k + 2), size * len(digits) + 0.3), squeeze=False)
    grey = plt.get_cmap("gray").with_extremes(bad=(0.5, 0.5, 0.5))
    for row, (digit, completions) in enumerate(zip(digits, samples)):
        given = digit.astype(float).copy()
        given[rows_given:] = np.nan  # not shown to the model
        panels = [digit, given, *completions]
        for col, (ax, panel) in enumerate(zip(axes[row], panels)):
            ax.imshow(panel, cmap=grey, vmin=0, vmax=DIGITS_MAX)
            ax.axhline(rows_given - 0.5, color="tab:red", lw=0.8) if col else None
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(["original", "given"][col] if col < 2 else f"sample {col - 1}", fontsize=8)
        if labels is not None:
            axes[row][0].set_ylabel(str(labels[row]), rotation=0, labelpad=8)
    fig.tight_layout()
    if save:
        save_figure(fig, save)
    return fig
