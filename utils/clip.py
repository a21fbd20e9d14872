"""CLIP, small: a seeded picture-caption generator, the contrastive loss, and a home-made tokenizer.

Notebook 07 uses this module to train a CLIP model from scratch on the CPU in about two minutes.

* The data: coloured shapes drawn with PIL on a light grey canvas (:func:`draw_scene`), each with a
  caption written in one of several phrasings (:data:`TEMPLATES`). Some colour-shape combinations
  never occur in training (:data:`HELD_OUT`): the zero-shot test asks the model to name them.
* The loss: :func:`contrastive_loss`, the symmetric cross-entropy over the image-text similarity
  matrix that ``CLIPModel(..., return_loss=True)`` computes, written out.
* The tokenizer: :func:`build_tokenizer` trains a byte-level BPE with the ``tokenizers`` library,
  laid out the way CLIP's own is, and saves it so that ``CLIPTokenizerFast.from_pretrained`` loads it.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

__all__ = [
    "COLOURS",
    "SHAPES",
    "SIZES",
    "POSITIONS",
    "TEMPLATES",
    "HELD_OUT",
    "TRAIN_COMBOS",
    "Scene",
    "caption",
    "draw_scene",
    "make_examples",
    "zero_shot_captions",
    "contrastive_loss",
    "clip_loss_fn",
    "build_tokenizer",
    "plot_training",
]

# The palette: a name and its RGB centre; each drawing jitters the channels a little.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 140, 15),
    "yellow": (230, 205, 20),
    "green": (40, 155, 55),
    "blue": (35, 80, 215),
    "purple": (135, 50, 180),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross")
# Radius of the shape as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.15, "large": 0.27}
# Centre of the shape as (x, y) fractions of the image side, and the words a caption uses for it.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.31, 0.5),
    "right": (0.69, 0.5),
    "top": (0.5, 0.31),
    "bottom": (0.5, 0.69),
    "middle": (0.5, 0.5),
}
_WHERE = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "middle": "in the middle",
}

# Phrasings of a caption. The first is the plain one that the zero-shot test uses as its labels.
TEMPLATES: tuple[str, ...] = (
    "a {colour} {shape}",
    "a {size} {colour} {shape}",
    "a {colour} {shape} {where}",
    "a {size} {colour} {shape} {where}",
    "there is a {colour} {shape} {where}",
    "{where} there is a {size} {colour} {shape}",
    "a {shape} that is {colour}",
    "a {size} {shape} in {colour} {where}",
)

# Held out of training: one combination for each colour and each shape (a Latin-square diagonal),
# so that every colour and every shape is seen in training, only never together in these pairs.
HELD_OUT: tuple[tuple[str, str], ...] = tuple(zip(COLOURS, SHAPES))
TRAIN_COMBOS: tuple[tuple[str, str], ...] = tuple(
    (c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELD_OUT
)


@dataclass(frozen=True)
class Scene:
    """What one picture shows: a shape of some colour, size and position."""

    colour: str
    shape: str
    size: str
    position: str

    def __post_init__(self):
        for field, value, allowed in (
            ("colour", self.colour, COLOURS),
            ("shape", self.shape, SHAPES),
            ("size", self.size, SIZES),
            ("position", self.position, POSITIONS),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {field} {value!r}; choose one of {sorted(allowed)}")


def caption(scene: Scene, template: int = 0) -> str:
    """The caption of `scene` in phrasing number `template` of :data:`TEMPLATES`."""
    if not isinstance(template, int) or not 0 <= template < len(TEMPLATES):
        raise ValueError(f"template must be an int in [0, {len(TEMPLATES)}), got {template!r}")
    text = TEMPLATES[template].format(
        colour=scene.colour, shape=scene.shape, size=scene.size, where=_WHERE[scene.position]
    )
    return re.sub(r"\ba (?=[aeiou])", "an ", text)  # "an orange square"


def _outline(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of `shape` (not the circle) centred on (cx, cy) with radius r, turned by `angle`."""
    if shape == "square":
        radii, turns = [r] * 4, [math.pi / 4 + k * math.pi / 2 for k in range(4)]
    elif shape == "diamond":
        radii, turns = [r * 1.15, r * 0.8] * 2, [k * math.pi / 2 for k in range(4)]
    elif shape == "triangle":
        radii, turns = [r * 1.1] * 3, [-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
    elif shape == "star":
        radii = [r * 1.1, r * 0.45] * 5
        turns = [-math.pi / 2 + k * math.pi / 5 for k in range(10)]
    elif shape == "cross":
        # A plus sign: twelve corners, arms a third of the width thick.
        t, points = r / 3, []
        for quarter in range(4):
            for x, y in ((t, -r), (t, -t), (r, -t)):
                c, s = math.cos(quarter * math.pi / 2), math.sin(quarter * math.pi / 2)
                points.append((x * c - y * s, x * s + y * c))
        radii = [math.hypot(x, y) for x, y in points]
        turns = [math.atan2(y, x) for x, y in points]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [(cx + q * math.cos(a + angle), cy + q * math.sin(a + angle)) for q, a in zip(radii, turns)]


def draw_scene(scene: Scene, *, image_size: int = 32, rng: random.Random | None = None) -> Image.Image:
    """Draw `scene` as an RGB picture of `image_size` pixels a side.

    `rng` jitters the background shade, the colour, the centre, the radius and a small rotation;
    without it the scene is drawn in its canonical form. The shape is drawn four times larger and
    scaled down so that its edges are smooth.
    """
    if not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"image_size must be an int of at least 16 pixels, got {image_size!r}")
    rng = rng or _NoJitter()
    big = 4 * image_size
    grey = rng.randint(205, 250)
    image = Image.new("RGB", (big, big), (grey, grey, grey))
    fill = tuple(min(255, max(0, v + rng.randint(-20, 20))) for v in COLOURS[scene.colour])
    fx, fy = POSITIONS[scene.position]
    cx = (fx + rng.uniform(-0.04, 0.04)) * big
    cy = (fy + rng.uniform(-0.04, 0.04)) * big
    r = SIZES[scene.size] * rng.uniform(0.9, 1.1) * big
    pen = ImageDraw.Draw(image)
    if scene.shape == "circle":
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        angle = math.radians(rng.uniform(-12, 12))
        pen.polygon(_outline(scene.shape, cx, cy, r, angle), fill=fill)
    return image.resize((image_size, image_size), Image.Resampling.LANCZOS)


class _NoJitter:
    """Stands in for random.Random when a scene is drawn without jitter."""

    def randint(self, a, b):
        return (a + b) // 2

    def uniform(self, a, b):
        return (a + b) / 2


def make_examples(
    n: int, *, combos=TRAIN_COMBOS, seed: int = 0, image_size: int = 32, templates=None
) -> list[dict]:
    """`n` seeded examples, each a dict with the picture and what it shows.

    Keys: ``image`` (PIL), ``caption`` (str), ``colour``, ``shape``, ``size``, ``position``.
    `combos` is the list of (colour, shape) pairs to draw from (:data:`TRAIN_COMBOS` by default,
    :data:`HELD_OUT` for the zero-shot test); `templates` the caption phrasings to draw from (all of
    :data:`TEMPLATES` by default). The same arguments always give the same examples.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    combos = list(combos)
    if not combos:
        raise ValueError("combos is empty: give at least one (colour, shape) pair")
    templates = list(range(len(TEMPLATES)) if templates is None else templates)
    if not templates:
        raise ValueError("templates is empty: give at least one template number")
    rng = random.Random(seed)
    sizes, positions = list(SIZES), list(POSITIONS)
    examples = []
    for _ in range(n):
        colour, shape = rng.choice(combos)
        scene = Scene(colour, shape, rng.choice(sizes), rng.choice(positions))
        image = draw_scene(scene, image_size=image_size, rng=rng)
        text = caption(scene, rng.choice(templates))
        examples.append({"image": image, "caption": text, **scene.__dict__})
    return examples


def zero_shot_captions(combos=HELD_OUT) -> list[str]:
    """The plain caption ("a red circle", "an orange square") of every (colour, shape) pair in `combos`."""
    return [caption(Scene(c, s, "small", "middle"), 0) for c, s in combos]


def contrastive_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """CLIP's loss for a batch of matching (image, text) pairs: row i of each goes with row i of the other.

    Both embeddings are scaled to unit length, their dot products times exp(logit_scale) are the
    logits, and the loss is the mean of two cross-entropies: each image against all texts, and
    each text against all images, the right partner being the one on the diagonal.
    """
    if image_embeds.ndim != 2 or text_embeds.ndim != 2:
        raise ValueError(
            f"embeddings must be 2-D (batch, dim), got image {tuple(image_embeds.shape)} "
            f"and text {tuple(text_embeds.shape)}"
        )
    if image_embeds.shape != text_embeds.shape:
        raise ValueError(
            f"image and text embeddings must have the same shape, got {tuple(image_embeds.shape)} "
            f"and {tuple(text_embeds.shape)}"
        )
    if torch.as_tensor(logit_scale).numel() != 1:
        raise ValueError(f"logit_scale must be a single number, got shape {tuple(logit_scale.shape)}")
    image_embeds = F.normalize(image_embeds, dim=-1)
    text_embeds = F.normalize(text_embeds, dim=-1)
    logits_per_image = logit_scale.exp() * image_embeds @ text_embeds.T
    targets = torch.arange(len(logits_per_image), device=logits_per_image.device)
    image_to_text = F.cross_entropy(logits_per_image, targets)
    text_to_image = F.cross_entropy(logits_per_image.T, targets)
    return (image_to_text + text_to_image) / 2


def clip_loss_fn(model, batch: dict) -> torch.Tensor:
    """The `loss_fn` for ``utils.train``: run a CLIPModel on a batch and apply :func:`contrastive_loss`."""
    out = model(**batch)
    return contrastive_loss(out.image_embeds, out.text_embeds, model.logit_scale)


def build_tokenizer(texts, save_dir, *, vocab_size: int = 400):
    """Train a byte-level BPE on `texts`, laid out like CLIP's, and save it to `save_dir`.

    The normaliser, pre-tokeniser, the ``</w>`` end-of-word mark and the two special tokens
    ``<|startoftext|>`` (id 0) and ``<|endoftext|>`` (id 1, also the padding) follow CLIP's tokenizer,
    so that ``CLIPTokenizerFast.from_pretrained(save_dir)`` loads it. Returns that loaded tokenizer.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizerFast

    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty list of strings")
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    bpe = Tokenizer(models.BPE(unk_token=eos, end_of_word_suffix="</w>", continuing_subword_prefix=""))
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # words, single digits and runs of punctuation, as CLIP splits them
            pre_tokenizers.Split(
                Regex(r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[bos, eos],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    trained = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    # The trainer numbers its tokens in an order that changes from run to run (ties between equal
    # counts), so number them again in a fixed order: the special tokens, the bytes, each byte as the
    # last piece of a word (as in CLIP's vocabulary, so that any text tokenizes without an unknown
    # token), the whole words of `texts`, then the pieces BPE made on the way to them.
    words = sorted(
        {w for t in texts for w, _ in bpe.pre_tokenizer.pre_tokenize_str(bpe.normalizer.normalize_str(t))}
    )
    whole = [w + "</w>" for w in words]
    missing = [t for t in whole if t not in trained["vocab"]]
    if missing:
        raise ValueError(
            f"vocab_size={vocab_size} is too small to keep every word whole, e.g. {missing[:3]}; raise it"
        )
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    order = [bos, eos, *alphabet, *(c + "</w>" for c in alphabet), *whole]
    order = list(dict.fromkeys(order))  # one-letter words are already among the bytes
    order += sorted(set(trained["vocab"]) - set(order), key=lambda t: (len(t), t))
    vocab = {token: i for i, token in enumerate(order)}
    # CLIP's tokenizer class builds the same pipeline around our vocabulary and merges.
    tokenizer = CLIPTokenizerFast(vocab=vocab, merges=merges)
    save_dir = Path(save_dir)
    tokenizer.save_pretrained(save_dir)
    return CLIPTokenizerFast.from_pretrained(save_dir)


def plot_training(history, metric: str = "accuracy", *, title: str | None = None):
    """The loss at every step (left axis) and `metric` where it was evaluated (right axis).

    `history` is the DataFrame ``utils.train`` returns. Plain matplotlib: no foundation helper
    draws a linear two-axis curve.
    """
    import matplotlib.pyplot as plt

    for column in ("step", "loss", metric):
        if column not in history.columns:
            raise ValueError(f"plot_training: history has no column {column!r} ({list(history.columns)})")
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.plot(history["step"], history["loss"], color="tab:blue", lw=1)
    ax.set(xlabel="training step", title=title)
    ax.set_ylabel("contrastive loss", color="tab:blue")
    evaluated = history.dropna(subset=[metric])
    right = ax.twinx()
    right.plot(evaluated["step"], evaluated[metric], "o-", color="tab:orange", ms=4)
    right.set_ylabel(metric, color="tab:orange")
    right.set_ylim(0, 1.02)
    fig.tight_layout()
    return ax
