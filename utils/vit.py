"""Helpers for notebook 04 (vision transformer).

Only what the notebook needs beyond the foundation: scikit-learn's 8 x 8 digits as a
`datasets.Dataset` of PIL images, the small ViT configuration trained on them, the check that a
ViT's patch embedding (a strided convolution) is "cut into patches, flatten, multiply by a matrix",
the attention of the [CLS] token to the patches, the patch grid drawn on a photo, and the token
count of a video transformer.
"""

from __future__ import annotations


import numpy as np
import torch
from PIL import Image

from .plotting import save_figure

DIGITS_SIZE = 8  # scikit-learn's digits are 8 x 8 pixels
DIGITS_MAX = 16  # ... with integer grey levels 0..16
DIGIT_NAMES = [str(d) for d in range(10)]


def digit_to_image(values) -> Image.Image:
    """One scikit-learn digit (64 values or 8 x 8, grey levels 0..16) as an 8 x 8 greyscale PIL image."""
    array = np.asarray(values, dtype=np.float64)
    if array.size != DIGITS_SIZE * DIGITS_SIZE:
        raise ValueError(f"a digit has {DIGITS_SIZE * DIGITS_SIZE} values, got an array of shape {array.shape}")
    if array.min() < 0 or array.max() > DIGITS_MAX:
        raise ValueError(f"digit grey levels must lie in 0..{DIGITS_MAX}, got {array.min()}..{array.max()}")
    pixels = np.rint(array.reshape(DIGITS_SIZE, DIGITS_SIZE) * 255 / DIGITS_MAX).astype(np.uint8)
    return Image.fromarray(pixels, mode="L")


def load_digits_dataset(test_size: float = 0.2, seed: int = 0):
    """scikit-learn's 1,797 handwritten digits as a `datasets.DatasetDict` with a stratified
    "train" and "test" split; columns "image" (8 x 8 PIL image) and "label" (ClassLabel "0".."9")."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature
    from sklearn.datasets import load_digits

    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be a fraction between 0 and 1, got {test_size!r}")
    digits = load_digits()
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=DIGIT_NAMES)})
    dataset = Dataset.from_dict(
        {"image": [digit_to_image(v) for v in digits.data], "label": digits.target.tolist()},
        features=features,
    )
    return dataset.train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")


def digits_processor():
    """The image processor of the small ViT: resize to 8 x 8, scale to 0..1, normalise to -1..1."""
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": DIGITS_SIZE, "width": DIGITS_SIZE})


def small_vit_config(**overrides):
    """The small ViT of the notebook: 8 x 8 RGB inputs cut into 2 x 2 patches (16 tokens + [CLS]), six layers of width 64.

    RGB because the image-classification pipeline converts every PIL image to RGB before the processor."""
    from transformers import ViTConfig

    settings = dict(
        image_size=DIGITS_SIZE,
        patch_size=2,
        num_channels=3,
        hidden_size=64,
        num_hidden_layers=6,
        num_attention_heads=4,
        intermediate_size=128,
        id2label=dict(enumerate(DIGIT_NAMES)),
        label2id={name: i for i, name in enumerate(DIGIT_NAMES)},
    )
    settings.update(overrides)
    return ViTConfig(**settings)


def prepare(dataset, processor):
    """Run `processor` once over a dataset of PIL images (converted to RGB, exactly as the pipeline
    does) and return a torch-formatted dataset with the columns "pixel_values" and "labels"."""
    missing = {"image", "label"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"prepare needs the columns 'image' and 'label'; missing {sorted(missing)}")

    def encode(batch):
        images = [image.convert("RGB") for image in batch["image"]]
        return {"pixel_values": processor(images=images, return_tensors="np")["pixel_values"]}

    encoded = dataset.map(encode, batched=True, batch_size=256, remove_columns=["image"])
    encoded = encoded.rename_column("label", "labels")
    encoded.set_format("torch", columns=["pixel_values", "labels"])
    return encoded


@torch.no_grad()
def predict(model, dataset, batch_size: int = 512) -> np.ndarray:
    """Predicted class ids of `model` over a prepared dataset (columns "pixel_values", "labels")."""
    was_training = model.training
    model.eval()
    try:
        predictions = []
        for start in range(0, len(dataset), batch_size):
            pixels = dataset[start : start + batch_size]["pixel_values"]
            predictions.append(model(pixel_values=pixels).logits.argmax(-1).numpy())
    finally:
        model.train(was_training)
    return np.concatenate(predictions)


def accuracy(model, dataset) -> float:
    """Fraction of a prepared dataset that `model` classifies correctly."""
    labels = np.asarray(dataset[:]["labels"])
    return float((predict(model, dataset) == labels).mean())


def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images (batch, channels, height, width) into non-overlapping square patches, row by row,
    and flatten each patch channel-first: returns (batch, num_patches, channels * patch_size**2)."""
    if pixel_values.ndim != 4:
        raise ValueError(f"pixel_values must be (batch, channels, height, width), got shape {tuple(pixel_values.shape)}")
    batch, channels, height, width = pixel_values.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"a {height} x {width} image does not split into {patch_size} x {patch_size} patches")
    rows, cols = height // patch_size, width // patch_size
    patches = pixel_values.reshape(batch, channels, rows, patch_size, cols, patch_size)
    patches = patches.permute(0, 2, 4, 1, 3, 5)  # batch, row, col, channel, dy, dx
    return patches.reshape(batch, rows * cols, channels * patch_size * patch_size)


def embed_patches_by_matmul(pixel_values: torch.Tensor, projection: torch.nn.Conv2d) -> torch.Tensor:
    """The patch embedding written as "patchify, then one matrix product": the convolution's kernel
    flattened into a (channels * p * p, hidden) matrix, plus its bias."""
    kernel = projection.weight  # hidden, channels, p, p
    if projection.kernel_size[0] != projection.kernel_size[1] or tuple(projection.stride) != tuple(projection.kernel_size):
        raise ValueError("the projection must be a square convolution whose stride equals its kernel size")
    patches = patchify(pixel_values, projection.kernel_size[0])
    embedded = patches @ kernel.reshape(kernel.shape[0], -1).T
    return embedded if projection.bias is None else embedded + projection.bias


@torch.no_grad()
def cls_attention(model, pixel_values: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """How much the [CLS] token attends to each patch in one layer, averaged over heads:
    (batch, rows, cols), each map summing to 1 minus the [CLS] token's attention to itself.

    Attention weights exist only in the eager implementation, so the model runs eagerly here
    and gets its previous implementation back afterwards."""
    config = model.config
    grid = config.image_size // config.patch_size
    if not -config.num_hidden_layers <= layer < config.num_hidden_layers:
        raise ValueError(f"layer must be in -{config.num_hidden_layers}..{config.num_hidden_layers - 1}, got {layer}")
    previous, was_training = config._attn_implementation, model.training
    model.set_attn_implementation("eager")
    model.eval()
    try:
        attentions = model(pixel_values=pixel_values, output_attentions=True).attentions
    finally:
        model.set_attn_implementation(previous)
        model.train(was_training)
    from_cls = attentions[layer][:, :, 0, 1:].mean(dim=1)  # batch, patches
    return from_cls.reshape(-1, grid, grid)


def show_patch_grid(image: Image.Image, patch_size: int = 16, size: int = 224, save: str | None = None):
    """Draw `image`, resized to size x size as a ViT sees it, with its patch grid and patch numbers.
    Plain matplotlib: the foundation's show_images draws no grid."""
    import matplotlib.pyplot as plt

    if size % patch_size:
        raise ValueError(f"size {size} is not a multiple of patch_size {patch_size}")
    resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(resized)
    for edge in range(0, size + 1, patch_size):
        ax.axhline(edge - 0.5, color="white", linewidth=0.8)
        ax.axvline(edge - 0.5, color="white", linewidth=0.8)
    per_side = size // patch_size
    for index in range(per_side * per_side):
        row, col = divmod(index, per_side)
        ax.text((col + 0.5) * patch_size, (row + 0.5) * patch_size, str(index + 1), color="yellow",
                fontsize=5, ha="center", va="center")
    ax.set_title(f"{per_side} x {per_side} = {per_side * per_side} patches of {patch_size} x {patch_size} pixels")
    ax.axis("off")
    if save:
        save_figure(fig, save)
    return fig


def video_token_counts(config, num_frames: int | None = None) -> dict:
    """Tokens and attention scores per head and layer for a video transformer config
    (e.g. transformers.TimesformerConfig) against one image of the same size.

    Joint space-time attention lets every token see every other one; TimeSformer's divided
    attention lets a patch token see the T tokens at its place in time, then the N + 1 tokens
    of its own frame ([CLS] included)."""
    frames = config.num_frames if num_frames is None else num_frames
    if frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {frames}")
    per_frame = (config.image_size // config.patch_size) ** 2
    image_tokens = per_frame + 1
    video_tokens = frames * per_frame + 1
    return {
        "frames": frames,
        "patches_per_frame": per_frame,
        "image_tokens": image_tokens,
        "video_tokens": video_tokens,
        "image_scores": image_tokens**2,
        "joint_scores": video_tokens**2,
        "divided_scores": frames * per_frame * (frames + per_frame + 1),
    }


__all__ = [
    "DIGITS_SIZE",
    "DIGIT_NAMES",
    "accuracy",
    "cls_attention",
    "digit_to_image",
    "digits_processor",
    "embed_patches_by_matmul",
    "load_digits_dataset",
    "patchify",
    "predict",
    "prepare",
    "show_patch_grid",
    "small_vit_config",
    "video_token_counts",
]
