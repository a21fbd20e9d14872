"""Helpers for notebook 04 (vision transformer).

Only what the notebook needs beyond the foundation: scikit-learn's 8 x 8 digits as a
`datasets.Dataset` of PIL images, the small ViT configuration trained on them, the check that a
ViT's patch embedding (a strided convolution) is "cut into patches, flatten, multiply by a matrix",
the attention of the [CLS] token to the patches, the patch grid drawn on a photo, the token
count of a video transformer, and test accuracy with a Wilson interval from :mod:`utils.evaluation`
(:func:`score`, :func:`score_table`).
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


def load_digits_dataset(test_size: float = 0.2, seed: int = 0, validation_size: float | None = None):
    """scikit-learn's 1,797 handwritten digits as a `datasets.DatasetDict` with a stratified
    "train" and "test" split; columns "image" (8 x 8 PIL image) and "label" (ClassLabel "0".."9").

    With `validation_size` (a fraction of the training split) a stratified "validation" split is
    carved out of "train"; "test" stays exactly the same digits either way."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features
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
    splits = dataset.train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")
    if validation_size is None:
        return splits
    if not 0 < validation_size < 1:
        raise ValueError(f"validation_size must be a fraction between 0 and 1, got {validation_size!r}")
    carved = splits["train"].train_test_split(test_size=validation_size, seed=seed, stratify_by_column="label")
    return DatasetDict(train=carved["train"], validation=carved["test"], test=splits["test"])


def digits_processor():
    """The image processor of the small ViT: resize to 8 x 8, scale to 0..1, normalise to -1..1."""
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": DIGITS_SIZE, "width": DIGITS_SIZE})


def start_digits_script(script, parser, argv=None):
    """What each scripts/vit_digits_*.py does first: parse `argv`, run torch on `args.threads` threads (1
    where the script has no such option), and load the digits split and the processor the notebook uses.
    Returns (args, the command to store in the record, the split, the processor)."""
    from .core import script_command

    args = parser.parse_args(argv)
    torch.set_num_threads(getattr(args, "threads", 1))
    return args, script_command(script, argv), load_digits_dataset(validation_size=0.2, seed=0), digits_processor()


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


def prepare_grey_levels(arrays, labels, processor):
    """A prepared dataset (as `prepare` returns) from digits given as grey levels 0..16, shape (n, 8, 8)
    or (n, 64), and their labels: each goes through `digit_to_image` exactly as the dataset's digits do."""
    from datasets import Dataset

    arrays = np.asarray(arrays).reshape(-1, DIGITS_SIZE * DIGITS_SIZE)
    if len(arrays) != len(labels):
        raise ValueError(f"{len(arrays)} digits but {len(labels)} labels")
    images = Dataset.from_dict({"image": [digit_to_image(a) for a in arrays], "label": [int(y) for y in labels]})
    return prepare(images, processor)


def classify_grey_levels(model, arrays, processor) -> np.ndarray:
    """Predicted classes of `model` for digits given as grey levels 0..16, shape (n, 8, 8) or (n, 64),
    such as iGPT's completions (see `prepare_grey_levels`)."""
    arrays = np.asarray(arrays).reshape(-1, DIGITS_SIZE * DIGITS_SIZE)
    return predict(model, prepare_grey_levels(arrays, np.zeros(len(arrays), dtype=int), processor))


@torch.no_grad()
def token_probe_accuracy(model, train_data, validation_data, layer: int = -2, C: float = 1.0) -> np.ndarray:
    """How much of a digit's class each single token of a ViT holds, in a linearly readable form: for
    every position ([CLS] first, then the patches row by row), a logistic regression (standardised
    features, regularisation C) on that token's hidden state after `layer` (-2: the input of the last
    layer) is fitted on `train_data` and scored on `validation_data` (prepared datasets). Returns the
    validation accuracy per position."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    was_training = model.training
    model.eval()
    try:
        states = [model(pixel_values=d[:]["pixel_values"], output_hidden_states=True).hidden_states[layer].numpy()
                  for d in (train_data, validation_data)]
    finally:
        model.train(was_training)
    (s_train, s_val), y_train, y_val = states, train_data[:]["labels"].numpy(), validation_data[:]["labels"].numpy()
    with _one_blas_thread():
        return np.array([make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
                         .fit(s_train[:, t], y_train).score(s_val[:, t], y_val) for t in range(s_train.shape[1])])


def accuracy(model, dataset) -> float:
    """Fraction of a prepared dataset that `model` classifies correctly."""
    labels = np.asarray(dataset[:]["labels"])
    return float((predict(model, dataset) == labels).mean())


def digits_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    """A digits split as scikit-learn wants it: (n, 64) grey levels 0..16 and (n,) labels."""
    pixels = np.stack([np.rint(np.asarray(image, dtype=np.float64) * DIGITS_MAX / 255).ravel()
                       for image in dataset["image"]])
    return pixels, np.asarray(dataset["label"])


def subset(dataset, fraction: float, seed: int = 0):
    """A stratified `fraction` of a split (e.g. 0.1 for a tenth of the training digits); 1.0 is the split itself."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if fraction == 1:
        return dataset
    return dataset.train_test_split(train_size=fraction, seed=seed, stratify_by_column="label")["train"]


class RandomShift:
    """A collate function that stacks prepared examples and moves each image by a random whole number
    of pixels, up to `max_dx` sideways and `max_dy` up or down, filling the uncovered border with
    `background` (-1, the processor's value for a blank pixel). Zero shifts only stack.

    The digits were scaled to fill their frame from top to bottom (every one has ink in its first
    and last row) but seldom reach the left and right edges, so only sideways shifts keep them whole."""

    def __init__(self, max_dx: int = 1, max_dy: int = 0, background: float = -1.0, seed: int = 0):
        for name, value in (("max_dx", max_dx), ("max_dy", max_dy)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number of pixels >= 0, got {value!r}")
        self.max_dx, self.max_dy, self.background = max_dx, max_dy, background
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, examples):
        pixels = torch.stack([e["pixel_values"] for e in examples])
        labels = torch.as_tensor([int(e["labels"]) for e in examples])
        sx, sy = self.max_dx, self.max_dy
        if sx or sy:
            height, width = pixels.shape[-2:]
            padded = torch.nn.functional.pad(pixels, (sx, sx, sy, sy), value=self.background)
            dys = torch.randint(0, 2 * sy + 1, (len(examples),), generator=self.generator).tolist()
            dxs = torch.randint(0, 2 * sx + 1, (len(examples),), generator=self.generator).tolist()
            pixels = torch.stack([padded[i, :, dy:dy + height, dx:dx + width]
                                  for i, (dy, dx) in enumerate(zip(dys, dxs))])
        return {"pixel_values": pixels, "labels": labels}


class SmallCNN(torch.nn.Module):
    """The sceptic's baseline, LeNet-shaped: two 3 x 3 convolutions (ReLU after each), one 2 x 2
    max-pool, a hidden layer and a linear classifier, on 8 x 8 RGB digits. With the defaults it has
    about as many parameters as the notebook's ViT. It is called like a transformers image
    classifier: `model(pixel_values=..., labels=...)` returns `.logits` and, with labels, `.loss`."""

    def __init__(self, width: int = 32, hidden: int = 176, num_channels: int = 3, num_labels: int = 10):
        super().__init__()
        nn = torch.nn
        self.features = nn.Sequential(
            nn.Conv2d(num_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Linear(2 * width * (DIGITS_SIZE // 2) ** 2, hidden), nn.ReLU(),
                                        nn.Linear(hidden, num_labels))

    def forward(self, pixel_values, labels=None):
        from transformers.modeling_outputs import ImageClassifierOutput

        if pixel_values.ndim != 4 or pixel_values.shape[-2:] != (DIGITS_SIZE, DIGITS_SIZE):
            raise ValueError(f"SmallCNN takes (batch, channels, {DIGITS_SIZE}, {DIGITS_SIZE}) images, "
                             f"got shape {tuple(pixel_values.shape)}")
        logits = self.classifier(self.features(pixel_values))
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return ImageClassifierOutput(loss=loss, logits=logits)


class DigitsMLP(torch.nn.Module):
    """The control with no prior about images at all: the 3 x 8 x 8 input flattened, two hidden layers of
    `hidden` units (ReLU after each) and a linear classifier. With the defaults it has about as many parameters
    as the notebook's ViT and CNN; a fixed shuffle of the pixels is a shuffle of its first layer's columns, so it
    cannot use which pixels are neighbours. Called like `SmallCNN`: `model(pixel_values=..., labels=...)`."""

    def __init__(self, hidden: int = 360, num_channels: int = 3, num_labels: int = 10):
        super().__init__()
        nn = torch.nn
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(num_channels * DIGITS_SIZE ** 2, hidden), nn.ReLU(),
                                        nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_labels))

    def forward(self, pixel_values, labels=None):
        from transformers.modeling_outputs import ImageClassifierOutput

        if pixel_values.ndim != 4 or pixel_values.shape[-2:] != (DIGITS_SIZE, DIGITS_SIZE):
            raise ValueError(f"DigitsMLP takes (batch, channels, {DIGITS_SIZE}, {DIGITS_SIZE}) images, "
                             f"got shape {tuple(pixel_values.shape)}")
        logits = self.classifier(pixel_values)
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return ImageClassifierOutput(loss=loss, logits=logits)


class _Stem(torch.nn.Module):
    """A stem in the place of a transformers ViT's patchifying convolution. `weight` is there because
    `ViTModel.forward` reads `patch_embeddings.projection.weight.dtype`."""

    def __init__(self, stem):
        super().__init__()
        self.stem = stem

    @property
    def weight(self):
        return next(self.stem.parameters())

    def forward(self, pixel_values):
        return self.stem(pixel_values)


def put_stem(model, stem):
    """Put `stem` (a module from (batch, channels, height, width) pixels to (batch, hidden, rows, cols), the shape the
    patch embedding gives) in the place of a transformers ViT's patchifying convolution; returns the model."""
    model.vit.embeddings.patch_embeddings.projection = _Stem(stem)
    return model


def dense_share(model) -> float:
    """The share of a `SmallCNN`'s parameters in its hidden dense layer (the one over the flattened feature map)."""
    dense = model.classifier[0]
    return sum(p.numel() for p in dense.parameters()) / sum(p.numel() for p in model.parameters())


def in_memory(dataset) -> list:
    """A prepared dataset (`prepare`) as a list of {"pixel_values", "labels"} tensor dicts, in order.

    The same examples in the same order, so a DataLoader draws the same batches from it; it only skips
    `datasets`' per-row conversion to tensors, which took about half of a small ViT's training step and
    two thirds of the CNN's on this CPU. A list passes through unchanged."""
    if isinstance(dataset, list):
        return dataset
    missing = {"pixel_values", "labels"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"in_memory needs a prepared dataset with 'pixel_values' and 'labels'; missing {sorted(missing)}")
    columns = dataset.with_format("torch")[:]
    return [{"pixel_values": p, "labels": l} for p, l in zip(columns["pixel_values"], columns["labels"])]


def train_digits(model, train_data, *, max_dx: int = 1, max_dy: int = 0, epochs: int = 30, min_steps: int = 300,
                 batch_size: int = 64, lr: float = 2e-3, eval_fn=None, eval_every: int | None = None,
                 seed: int = 0, progress: bool = False):
    """One recipe for every digits classifier of the notebook (the ViT, the CNN, each point of the
    data-efficiency curve): `utils.train` for `epochs` passes or at least `min_steps` steps (a tenth
    of the data gets as many updates as half of it), each batch shifted by RandomShift(max_dx, max_dy)."""
    from .training import train

    steps = max(epochs * -(-len(train_data) // batch_size), min_steps)
    return train(model, in_memory(train_data), collate_fn=RandomShift(max_dx, max_dy, seed=seed), batch_size=batch_size,
                 max_steps=steps, lr=lr, eval_fn=eval_fn, eval_every=eval_every, seed=seed, progress=progress)


def cnn_over_seeds(datasets: dict, *, seeds=(0, 1, 2)) -> dict:
    """The small CNN trained by `train_digits` with its plain recipe (no shift, the default learning rate
    and number of steps) once per seed on each of `datasets` ({name: (prepared training split, prepared
    test split)}), seeds in the outer loop: {name: [each seed's predicted classes for the test split]}.
    `scripts/vit_digits_shuffle.py` uses it for notebook 04's shuffled-pixels test."""
    if not datasets or not seeds:
        raise ValueError(f"cnn_over_seeds needs at least one dataset and one seed, got {list(datasets)} and {list(seeds)}")
    predictions = {name: [] for name in datasets}
    for seed in seeds:
        for name, (train_split, test_split) in datasets.items():
            torch.manual_seed(seed)
            model = SmallCNN()
            train_digits(model, train_split, max_dx=0, max_dy=0, seed=seed)
            predictions[name].append(predict(model, test_split))
    return predictions


def score(predictions, labels, confidence: float = 0.95) -> dict:
    """Accuracy of `predictions` against `labels` with its number of errors and a Wilson interval
    (:func:`utils.evaluation.wilson`): a dict with accuracy, errors, n, low and high.

    The interval covers the sampling of the test digits, for this one fixed model: how far the
    accuracy could move on another test set drawn like this one, not what retraining would give."""
    from .evaluation import wilson

    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape or labels.ndim != 1 or not len(labels):
        raise ValueError(f"predictions and labels must be two 1-D arrays of one length, got shapes "
                         f"{predictions.shape} and {labels.shape}")
    correct = int((predictions == labels).sum())
    estimate = wilson(correct, len(labels), confidence)
    return {"accuracy": estimate.value, "errors": len(labels) - correct, "n": estimate.n,
            "low": estimate.low, "high": estimate.high}


def score_table(predictions: dict, labels, confidence: float = 0.95):
    """One row per model of `predictions` (name -> predicted labels): accuracy, errors and the
    Wilson interval of :func:`score` (test digits resampled, each model held fixed), as a
    DataFrame ready to show."""
    import pandas as pd

    rows = {name: score(p, labels, confidence) for name, p in predictions.items()}
    return pd.DataFrame({"accuracy": [f"{r['accuracy']:.1%}" for r in rows.values()],
                         "errors": [int(r["errors"]) for r in rows.values()],
                         f"{confidence:.0%} interval": [f"{r['low']:.1%} to {r['high']:.1%}" for r in rows.values()]},
                        index=list(rows))


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


def position_similarity(model) -> np.ndarray:
    """Cosine similarity between the learned position embeddings of a ViT's patches ([CLS] left out):
    (rows, cols, rows, cols), entry [r, c] the map of patch (r, c)'s similarity to every patch."""
    embeddings = model.vit.embeddings.position_embeddings.detach()[0, 1:]
    grid = model.config.image_size // model.config.patch_size
    unit = torch.nn.functional.normalize(embeddings, dim=-1)
    return (unit @ unit.T).numpy().reshape(grid, grid, grid, grid)


def attention_distance(attentions, grid: int, patch_size: int) -> np.ndarray:
    """Mean attention distance (the ViT paper's fig. 7, right) from attention weights `attentions`
    (layers, batch, heads, 1 + grid**2 tokens, same), token 0 being [CLS]: for each layer and head,
    the distance in pixels between a patch query and the patch keys' centres, weighted by its
    attention renormalised over the patches, averaged over queries and images: (layers, heads)."""
    weights = torch.as_tensor(np.asarray(attentions), dtype=torch.float64)
    if weights.ndim != 5 or weights.shape[-1] != weights.shape[-2] or weights.shape[-1] != grid * grid + 1:
        raise ValueError(f"need attentions of shape (layers, batch, heads, {grid * grid + 1}, {grid * grid + 1}), "
                         f"got {tuple(weights.shape)}")
    patches = weights[..., 1:, 1:]
    patches = patches / patches.sum(-1, keepdim=True)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], 1).double() * patch_size
    distance = torch.cdist(centres, centres)  # (patches, patches) in pixels
    return (patches * distance).sum(-1).mean(dim=(1, 3)).numpy()


def mean_attention_distance(model, pixel_values: torch.Tensor) -> dict:
    """`attention_distance` of a ViT on `pixel_values` (per layer and head, in pixels), and `even`,
    the distance that attention spread evenly over all patches would give."""
    config = model.config
    grid = config.image_size // config.patch_size
    previous, was_training = config._attn_implementation, model.training
    model.set_attn_implementation("eager")
    model.eval()
    try:
        with torch.no_grad():
            attentions = torch.stack(model(pixel_values=pixel_values, output_attentions=True).attentions)
    finally:
        model.set_attn_implementation(previous)
        model.train(was_training)
    even = torch.full((1, 1, 1, grid * grid + 1, grid * grid + 1), 1.0)
    return {"distance": attention_distance(attentions, grid, config.patch_size),
            "even": float(attention_distance(even, grid, config.patch_size)[0, 0])}


def show_position_and_distance(similarity, distances, *, even=None, size=4.0, save=None):
    """One figure with the two views of the ViT paper's fig. 7 for a small ViT: left, for every patch
    of the grid, a small map of its position embedding's cosine similarity to every patch's (one
    colour scale, -1 to 1); right, the mean attention distance (layers, heads) of every head against
    its layer, with `even` (the distance of an even spread) as a dashed line."""
    import matplotlib.pyplot as plt

    similarity, distances = np.asarray(similarity), np.asarray(distances)
    if similarity.ndim != 4 or similarity.shape[:2] != similarity.shape[2:]:
        raise ValueError(f"similarity must be (rows, cols, rows, cols), got shape {similarity.shape}")
    if distances.ndim != 2:
        raise ValueError(f"distances must be (layers, heads), got shape {distances.shape}")
    rows, cols = similarity.shape[:2]
    fig = plt.figure(figsize=(2.3 * size, size))
    outer = fig.add_gridspec(1, 2, width_ratios=[1, 1.15], wspace=0.3)
    inner = outer[0].subgridspec(rows, cols, wspace=0.08, hspace=0.08)
    for r in range(rows):
        for c in range(cols):
            ax = fig.add_subplot(inner[r, c])
            shown = ax.imshow(similarity[r, c], cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.2))
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0 and c == 0:
                first = ax
    first.set_title("position embedding similarity:\nrow = patch row, column = patch column", fontsize=9, loc="left")
    fig.colorbar(shown, ax=fig.axes, location="left", fraction=0.03, pad=0.04, label="cosine similarity")
    ax = fig.add_subplot(outer[1])
    layers, heads = distances.shape
    for h in range(heads):
        ax.scatter(np.arange(1, layers + 1) + (h - (heads - 1) / 2) * 0.08, distances[:, h], s=22, label=f"head {h + 1}")
    if even is not None:
        ax.axhline(even, color="grey", linestyle="--", linewidth=1, label="attention spread evenly")
    ax.set_xlabel("layer"), ax.set_ylabel("mean attention distance (pixels)")
    ax.set_xticks(np.arange(1, layers + 1))
    ax.set_ylim(0, 1.2 * max(float(distances.max()), even or 0.0))
    ax.set_title("mean attention distance per head", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    if save:
        save_figure(fig, save)
    return fig


def attention_evenness(maps) -> dict:
    """How evenly each attention map (n, rows, cols) spreads its weight over its P patches, after
    renormalising it to sum to 1: `entropy`, its entropy divided by log P (1 = perfectly even, 0 =
    all on one patch), `effective`, the effective number of patches exp(entropy) (P = even, 1 = all
    on one patch), and `peak`, its largest weight times P (1 = even, P = all on one patch).
    All are arrays with one value per map."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or (maps < 0).any() or not (maps.sum((1, 2)) > 0).all():
        raise ValueError(f"need (n, rows, cols) maps of non-negative weights, none all zero; got shape {maps.shape}")
    weights = maps.reshape(len(maps), -1)
    weights = weights / weights.sum(1, keepdims=True)
    patches = weights.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(weights > 0, weights * np.log(weights), 0.0).sum(1)
    return {"entropy": entropy / np.log(patches), "effective": np.exp(entropy), "peak": weights.max(1) * patches}


def summarise_cls_attention(maps, images, patch_size: int = 2) -> dict:
    """Where [CLS]'s attention maps (n, rows, cols), one per digit, put their weight, against the ink of the
    digits `images` (n, rows * patch_size, cols * patch_size grey levels, 0 = no ink). Returns, per digit
    (arrays of n): `ink_share`, the share of the map's weight on patches with any ink; `peak_on_blank`,
    whether its largest weight falls on a patch with no ink; `above_twice`, how many patches get twice an
    even share or more; and `attention_evenness`'s `entropy`, `effective` and `peak`. Also `ink_patches`,
    the share of all patches that hold ink, and `patches`, the number of patches per map (one number each)."""
    maps = np.asarray(maps, dtype=np.float64)
    images = np.asarray(images)
    if maps.ndim != 3 or images.shape != (len(maps), maps.shape[1] * patch_size, maps.shape[2] * patch_size):
        raise ValueError(f"need maps (n, rows, cols) and images (n, rows * {patch_size}, cols * {patch_size}); "
                         f"got {maps.shape} and {images.shape}")
    n, rows, cols = maps.shape
    ink = images.reshape(n, rows, patch_size, cols, patch_size).max(axis=(2, 4)) > 0
    summary = attention_evenness(maps)  # checks the maps: non-negative, none all zero
    weights = maps / maps.sum((1, 2), keepdims=True)
    peak = weights.reshape(n, -1).argmax(1)
    summary.update(ink_share=(weights * ink).sum((1, 2)), peak_on_blank=~ink.reshape(n, -1)[np.arange(n), peak],
                   above_twice=(weights * rows * cols >= 2).sum((1, 2)), ink_patches=float(ink.mean()),
                   patches=rows * cols)
    return summary


def print_cls_attention_summary(summary: dict, shown: dict | None = None):
    """Print what `summarise_cls_attention` measured over the test digits: the ink's share of [CLS]'s patch
    attention against the share of patches with ink, how often its largest weight falls on a blank patch (against
    a patch drawn at random; `shown`, {title: index}, names the shown digits where it does), and how evenly it
    spreads (medians of the entropy, the effective number of patches and the peak, in even shares)."""
    s = summary
    blank = [title for title, i in (shown or {}).items() if s["peak_on_blank"][i]]
    print(f"{s['ink_patches']:.0%} of patches hold ink; they get {s['ink_share'].mean():.0%} of [CLS]'s patch attention "
          f"(mean over the test digits); its largest weight falls on a patch with no ink in {s['peak_on_blank'].mean():.0%} "
          f"of the test digits (a patch drawn at random: {1 - s['ink_patches']:.0%}"
          + (f"; of the {len(shown)} shown: {', '.join(blank) or 'none'})" if shown else ")"))
    print(f"entropy of [CLS]'s patch attention: {np.median(s['entropy']):.2f} of the even spread's, as if spread evenly "
          f"over {np.median(s['effective']):.1f} of the {s['patches']} patches (medians)\nits largest weight: {np.median(s['peak']):.1f} "
          f"times an even share (median), twice an even share or more in {(s['peak'] >= 2).mean():.0%} of the test "
          f"digits; patches at twice an even share or more, median per digit: {np.median(s['above_twice']):.0f}")


def describe_run(kind: str, history, record_accuracy: float | None = None) -> str:
    """One line on a `train_digits` run whose history has validation `accuracy` at some steps: steps and
    seconds, the last and the highest validation accuracy, and the training loss at the end (mean of the
    last five steps); with `record_accuracy`, a script's record of the same run beside the last accuracy.
    When several evaluations tie for the highest accuracy, the line says how many and gives the last step
    that reaches it (and whether that is the last evaluation), not only the first."""
    scored = history.dropna(subset=["accuracy"])
    if scored.empty:
        raise ValueError(f"describe_run: the history of the {kind} run holds no validation accuracy")
    top = scored["accuracy"].max()
    best_steps = scored.loc[scored["accuracy"] == top, "step"].astype(int).tolist()
    if len(best_steps) == 1:
        where = f"at step {best_steps[0]}"
    else:
        last = " (the last evaluation)" if best_steps[-1] == int(scored["step"].iloc[-1]) else ""
        where = (f"a tie of {len(best_steps)} evaluations, first at step {best_steps[0]}, "
                 f"last at step {best_steps[-1]}{last}")
    return (f"{kind}: {len(history)} steps in {history['seconds'].iloc[-1]:.0f} s; validation accuracy at the last step "
            f"{scored['accuracy'].iloc[-1]:.1%}"
            + (f" here, {record_accuracy:.1%} in the script's record" if record_accuracy is not None else "")
            + f"; highest {top:.1%}, {where}; "
            f"training loss at the end {history['loss'].iloc[-5:].mean():.3f}")


def swin_attention_flops(height: int, width: int, channels: int, window: int = 7) -> dict:
    """The cost of one attention block on a height x width grid of tokens of `channels` dimensions, by
    equations (1) and (2) of the Swin paper (Liu et al., 2021), which count the four projections and
    the attention products and leave out the softmax: global attention 4hwC^2 + 2(hw)^2 C, attention in
    non-overlapping windows of `window` x `window` tokens 4hwC^2 + 2 M^2 hw C."""
    if min(height, width, channels, window) < 1:
        raise ValueError(f"height, width, channels and window must be positive, got {height}, {width}, {channels}, {window}")
    tokens = height * width
    projections = 4 * tokens * channels ** 2
    return {"tokens": tokens, "global": projections + 2 * tokens ** 2 * channels,
            "window": projections + 2 * window ** 2 * tokens * channels}


def seed_error_ratios(seeds):
    """Mean test errors of the ViT divided by the CNN's over the seeds, per training-set size where both were
    trained: a Series indexed by the number of training digits."""
    import pandas as pd

    labels = test_labels()
    errors = seeds.assign(errors=[int((seed_predictions(p) != labels).sum()) for p in seeds["test_predictions"]])
    means = errors.groupby(["training_digits", "model"])["errors"].mean().unstack("model").dropna()
    if not {"ViT", "CNN"} <= set(means.columns) or means.empty:
        return pd.Series(dtype=float, name="ViT errors per CNN error")
    return (means["ViT"] / means["CNN"]).rename("ViT errors per CNN error")


PROBE_C = [0.01, 0.1, 1.0, 10.0]  # the inverse regularisation strengths every linear probe of notebook 04 tries


def linear_probe(train, validation):
    """The notebook's linear probe: logistic regression on standardised features, its C chosen from `PROBE_C`
    on `validation` = (X, y) and refitted on `train` = (X, y) (`choose_on_validation`). Returns (the fitted
    pipeline, the GridSearchCV), like `choose_on_validation`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return choose_on_validation(make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
                                {"logisticregression__C": PROBE_C}, train, validation)


def probe_table(features: dict, labels: dict):
    """One `linear_probe` per entry of `features` ({row name: {"train": X, "validation": X, "test": X}}) with
    `labels` ({"train": y, "validation": y, "test": y}): a table of each probe's validation accuracy and its
    test scores (`score_table`: accuracy, errors, Wilson interval)."""
    probes = {name: linear_probe((f["train"], labels["train"]), (f["validation"], labels["validation"]))
              for name, f in features.items()}
    table = score_table({name: fitted.predict(features[name]["test"]) for name, (fitted, _) in probes.items()},
                        labels["test"])
    table.insert(0, "validation accuracy", [f"{search.best_score_:.1%}" for _, search in probes.values()])
    return table


def choose_on_validation(estimator, grid, train, validation):
    """Grid search on one fixed split: fit every setting of `grid` (a scikit-learn parameter grid) on
    `train` = (X, y), score it on `validation` = (X, y), and refit the best on `train` alone.
    Returns (the refitted estimator, the fitted GridSearchCV); its best_score_ is the validation
    accuracy of the chosen setting. Ties go to the first setting in the grid's order."""
    from sklearn.model_selection import GridSearchCV, PredefinedSplit

    (X_train, y_train), (X_val, y_val) = train, validation
    if len(X_train) != len(y_train) or len(X_val) != len(y_val):
        raise ValueError(f"features and labels differ in length: train {len(X_train)} vs {len(y_train)}, "
                         f"validation {len(X_val)} vs {len(y_val)}")
    search = GridSearchCV(estimator, grid, refit=False,
                          cv=PredefinedSplit([-1] * len(X_train) + [0] * len(X_val)))
    with _one_blas_thread():
        search.fit(np.concatenate([X_train, X_val]), np.concatenate([y_train, y_val]))
        return estimator.set_params(**search.best_params_).fit(X_train, y_train), search


def _one_blas_thread():
    """A context in which NumPy's and scikit-learn's BLAS and OpenMP pools use one thread. The notebook's fits are
    small (a few thousand rows), and on a small, busy CPU several threads per fit mostly wait on each other: one
    thread made the logistic-regression probes many times faster there."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def show_cls_attention(images, maps, *, titles=None, size=1.7, reference=None, save=None):
    """[CLS] attention maps (n, rows, cols) laid over their digits (n PIL images or 8 x 8 arrays):
    each patch coloured by its attention (viridis) on ONE colour scale shared by all panels, and the
    edge of each digit's ink (every pixel above 0) drawn on top in white along the pixels' edges, so that ink and
    attention cannot be confused.
    `reference`, a weight (e.g. what every patch would get if the attention were spread evenly),
    is marked on the colour bar as a red line, and every patch whose weight is above it is outlined
    in red dashes (the caller's text says so: the colour bar's label names only the weight)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    maps = np.asarray(maps, dtype=np.float64)
    images = [np.asarray(image, dtype=np.float64) for image in images]
    if maps.ndim != 3 or len(maps) != len(images):
        raise ValueError(f"need one 2-D map per image: {len(images)} images, maps of shape {maps.shape}")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    vmax = float(maps.max())
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images) + 0.8, size + 0.4), squeeze=False)
    for i, (ax, image, heat) in enumerate(zip(axes[0], images, maps)):
        height, width = image.shape
        shown = ax.imshow(heat, cmap="viridis", vmin=0, vmax=vmax, extent=(0, width, height, 0),
                          interpolation="nearest")
        if image.max() > 0:  # the edge of the ink (any grey level above 0, as `summarise_cls_attention` counts it),
            fine = 8  # drawn on the pixels' edges: the ink mask, each pixel made 8 x 8, padded with a blank border
            ink = np.pad(np.kron(image > 0, np.ones((fine, fine))), 1)
            ax.contour((np.arange(ink.shape[1]) - 0.5) / fine, (np.arange(ink.shape[0]) - 0.5) / fine, ink,
                       levels=[0.5], colors="white", linewidths=1.2)
        if reference is not None:  # the patches above the reference, outlined just inside their edges
            patch_h, patch_w = height / heat.shape[0], width / heat.shape[1]
            for r, c in zip(*np.nonzero(heat > reference)):
                ax.add_patch(Rectangle((c * patch_w + 0.12, r * patch_h + 0.12), patch_w - 0.24, patch_h - 0.24,
                                       fill=False, edgecolor="red", linestyle="--", linewidth=1.2))
        ax.set_xlim(0, width), ax.set_ylim(height, 0)
        ax.set_xticks([]), ax.set_yticks([])
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    bar = fig.colorbar(shown, ax=list(axes[0]), fraction=0.02, pad=0.02, label="[CLS] attention weight")
    if reference is not None:
        if not 0 <= reference <= vmax:
            raise ValueError(f"reference {reference} is outside the colour scale 0..{vmax:.3f}")
        bar.ax.axhline(reference, color="red", linewidth=2)
    if save:
        save_figure(fig, save)
    return fig


def plot_data_efficiency(runs, *, chosen=None, save=None):
    """Validation accuracy against training digits, one line per (model, shift) in `runs` (columns
    model, shift, training_digits, validation_accuracy): the ViT in solid lines with circles, the CNN
    in dashed lines with squares, one colour per shift, a different marker size per shift so that
    overlapping points stay visible; the legend sits outside the axes. `chosen` ({model: shift label})
    draws the chosen settings thicker."""
    import matplotlib.pyplot as plt

    missing = {"model", "shift", "training_digits", "validation_accuracy"} - set(runs.columns)
    if missing:
        raise ValueError(f"runs lacks the columns {sorted(missing)}")
    shifts = sorted(runs["shift"].unique())
    colours = dict(zip(shifts, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    sizes_by_shift = dict(zip(shifts, np.linspace(9, 4, len(shifts))))
    fig, ax = plt.subplots(figsize=(8.5, 4))
    for (kind, shift), run in runs.groupby(["model", "shift"]):
        run = run.sort_values("training_digits")
        vit = kind == "ViT"
        thick = chosen is not None and chosen.get(kind) == shift
        ax.plot(run["training_digits"], run["validation_accuracy"], marker="o" if vit else "s",
                markersize=sizes_by_shift[shift], markerfacecolor="none" if not vit else colours[shift],
                ls="-" if vit else "--", lw=2.4 if thick else 1.1, color=colours[shift],
                label=f"{kind}, shift {shift}" + (" (chosen)" if thick else ""))
    sizes = sorted(runs["training_digits"].unique())
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes], minor=False)
    ax.set_xticks([], minor=True)
    ax.set(xlabel="training digits (logarithmic scale)", ylabel="validation accuracy",
           title="validation accuracy by shift (one seed per point; the steps vary with the size)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    if save:
        save_figure(fig, save)
    return fig


def layer_flops(config, tokens: int) -> dict:
    """FLOPs of one encoder layer of a ViT-style config (hidden size D, MLP size from
    intermediate_size) for a sequence of `tokens` tokens, counting a multiply-add as two FLOPs:
    the linear layers (query, key, value and output projections, 4 D^2 per token, and the MLP,
    2 D * intermediate per token) and joint attention's scores and weighted sum (2 n D per token)."""
    if tokens < 1:
        raise ValueError(f"tokens must be at least 1, got {tokens}")
    d, m = config.hidden_size, config.intermediate_size
    linear = 2 * tokens * (4 * d * d + 2 * d * m)
    attention = 2 * 2 * tokens * tokens * d
    return {"tokens": tokens, "linear_flops": linear, "attention_flops": attention}


def divided_layer_flops(config, num_frames: int | None = None) -> dict:
    """FLOPs of one TimeSformer layer with divided space-time attention, as transformers'
    TimesformerLayer computes it (a multiply-add counts two): the linear layers of a plain ViT layer
    for all T * N + 1 tokens (`layer_flops`), plus, for the T * N patch tokens, the time step's own
    query, key, value and output projections and its `temporal_dense` (5 D^2 multiply-adds per patch
    token); and the attention of both steps, 4 D FLOPs per score (the score and the weighted sum)."""
    counts = video_token_counts(config, num_frames)
    d = config.hidden_size
    temporal_linear = 2 * 5 * d * d * counts["patches_per_frame"] * counts["frames"]
    plain = layer_flops(config, counts["video_tokens"])
    return {"frames": counts["frames"], "tokens": counts["video_tokens"],
            "linear_flops": plain["linear_flops"] + temporal_linear, "temporal_linear_flops": temporal_linear,
            "attention_flops": 4 * d * counts["divided_scores"]}


def video_cost_tables(config, frames=(1, 8, 32, 96)):
    """The video section's two tables for a video config (e.g. transformers.TimesformerConfig).
    `counts`: tokens and attention scores per head and layer at each number of frames
    (`video_token_counts`), with the ratios joint / image and divided / joint. `gflop`: GFLOP per layer
    of a joint-attention layer (a plain ViT layer: `layer_flops`) and of a divided-attention layer
    (`divided_layer_flops`, whose linear layers include the time step's projections)."""
    import pandas as pd

    counts = pd.DataFrame([video_token_counts(config, num_frames=t) for t in frames]).set_index("frames")
    counts["joint / image"] = (counts["joint_scores"] / counts["image_scores"]).round(1)
    counts["divided / joint"] = (counts["divided_scores"] / counts["joint_scores"]).round(3)
    rows = {}
    for t in frames:
        joint, divided = layer_flops(config, int(counts.loc[t, "video_tokens"])), divided_layer_flops(config, t)
        rows[t] = {"joint: linear": joint["linear_flops"], "joint: attention": joint["attention_flops"],
                   "divided: linear": divided["linear_flops"], "divided: attention": divided["attention_flops"]}
    gflop = (pd.DataFrame.from_dict(rows, orient="index") / 1e9).round(1).rename_axis("frames")
    return counts, gflop


def show_patch_grid(image: Image.Image, patch_size: int = 16, size: int = 224, save: str | None = None):
    """Draw `image`, resized to size x size as a ViT sees it, with its patch grid and patch numbers.
    Plain matplotlib: the foundation's show_images draws no grid."""
    import matplotlib.pyplot as plt

    if size % patch_size:
        raise ValueError(f"size {size} is not a multiple of patch_size {patch_size}")
    original = f"{image.width} x {image.height}"
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
    ax.set_title(f"{original} pixels squashed to {size} x {size} (not cropped):\n"
                 f"{per_side} x {per_side} = {per_side * per_side} patches of {patch_size} x {patch_size} pixels", fontsize=9)
    ax.axis("off")
    if save:
        save_figure(fig, save)
    return fig


def video_token_counts(config, num_frames: int | None = None) -> dict:
    """Tokens and attention scores per head and layer for a video transformer config
    (e.g. transformers.TimesformerConfig) against one image of the same size.

    Joint space-time attention lets every one of the T * N + 1 tokens see every other one ([CLS]
    included, as a query and as a key). TimeSformer's divided attention, as transformers'
    TimesformerLayer computes it, first lets each of the N patch places attend across its T frames
    (N * T**2 scores, [CLS] not taking part), then lets each frame attend within itself with a copy
    of [CLS] in front (T * (N + 1)**2 scores); the [CLS] copies are averaged afterwards."""
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
        "temporal_scores": per_frame * frames**2,
        "spatial_scores": frames * (per_frame + 1) ** 2,
        "divided_scores": per_frame * frames**2 + frames * (per_frame + 1) ** 2,
    }



# ---- the seeded ViT-against-CNN records (scripts/vit_digits_seeds.py) ---------------------------------------

# The settings scripts/vit_digits_seeds.py tries on validation, per network.
SEED_GRIDS = {
    "ViT": {"lr": [1e-3, 3e-3], "steps": [500, 1500], "intermediate_size": [128, 256]},
    "CNN": {"lr": [1e-3, 3e-3], "steps": [500, 1500]},
}

# The ViT's grid choice sits at its corner (the largest learning rate and number of steps), so the script's
# `beyond` stage tries past it: a higher rate, more steps, and dropout (hidden and attention, transformers'
# ViT has no stochastic depth) as a regulariser, each on validation with seed 0 like the grid.
SEED_GRID_BEYOND = {
    "ViT": [{"lr": 1e-2, "steps": 1500, "intermediate_size": 128, "dropout": 0.0},
            {"lr": 3e-3, "steps": 3000, "intermediate_size": 128, "dropout": 0.0},
            {"lr": 3e-3, "steps": 1500, "intermediate_size": 128, "dropout": 0.1}],
}


def load_seed_records(folder) -> tuple:
    """The tuning and seeds records of `scripts/vit_digits_seeds.py` in `folder`: (tuning, seeds), two
    DataFrames. Every `tuning_*.csv` and every `seeds_*.csv` is read (one file per run of the script, each
    row with the command that wrote it); seeds gains a column `test_accuracy`, computed from its digit-by-digit
    `test_predictions` against the test labels of `load_digits_dataset(validation_size=0.2)`."""
    import pandas as pd
    from pathlib import Path

    folder = Path(folder)
    files = {stage: sorted(folder.glob(f"{stage}_*.csv")) for stage in ("tuning", "seeds")}
    missing = [stage for stage, found in files.items() if not found]
    if missing:
        raise FileNotFoundError(f"load_seed_records: {folder} has no {' or '.join(m + '_*.csv' for m in missing)}; "
                                "scripts/vit_digits_seeds.py writes them")
    tuning = pd.concat([pd.read_csv(f) for f in files["tuning"]], ignore_index=True)
    seeds = pd.concat([pd.read_csv(f, dtype={"test_predictions": str}) for f in files["seeds"]], ignore_index=True)
    labels = test_labels()
    seeds["test_accuracy"] = [float((seed_predictions(p) == labels).mean()) for p in seeds["test_predictions"]]
    return tuning, seeds


def build_digits_model(kind: str, **config):
    """A fresh model for the digits: "ViT" (`ViTForImageClassification` of `small_vit_config(**config)`),
    "CNN" (`SmallCNN()`) or "MLP" (`DigitsMLP()`); the last two take no settings. Seed torch before calling for reproducible weights."""
    if kind == "ViT":
        from transformers import ViTForImageClassification

        return ViTForImageClassification(small_vit_config(**config))
    if kind in ("CNN", "MLP"):
        if config:
            raise ValueError(f"build_digits_model: the {kind} takes no settings, got {sorted(config)}")
        return SmallCNN() if kind == "CNN" else DigitsMLP()
    raise ValueError(f"build_digits_model: kind must be 'ViT', 'CNN' or 'MLP', got {kind!r}")


def pooled_features(model, processor, images, batch_size: int = 64) -> np.ndarray:
    """A pretrained encoder's `pooler_output` (for ViT-style encoders such as DINOv2: the final [CLS] state)
    for each of `images` (PIL images), prepared by its `processor`, `batch_size` images at a time."""
    images = list(images)
    if not images:
        raise ValueError("pooled_features: no images given")
    model.eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            inputs = processor(images[start:start + batch_size], return_tensors="pt")
            chunks.append(model(**inputs).pooler_output.numpy())
    return np.concatenate(chunks)


def write_records(rows, out):
    """Write the rows (dicts) of one run of a `scripts/vit_digits_*.py` script to the CSV file `out`."""
    import pandas as pd
    from pathlib import Path

    if not rows:
        raise ValueError(f"write_records: no rows to write to {out}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"wrote {len(rows)} rows to {out}")
    return out


def test_labels() -> np.ndarray:
    """The labels of the 360 test digits, in the order the seeds records store their predictions."""
    digits = load_digits_dataset(validation_size=0.2, seed=0)
    return np.array(digits["test"]["label"])


def seed_predictions(text: str) -> np.ndarray:
    """A record's `test_predictions` (one digit character per test digit) as an array of ints."""
    if not isinstance(text, str) or not text.isdigit():
        raise ValueError(f"seed_predictions: expected a string of digits, got {str(text)[:20]!r}")
    return np.array([int(c) for c in text])


def seed_summary(seeds):
    """Test accuracy per model and training-set size over the seeds: mean, standard deviation, range."""
    grouped = seeds.groupby(["training_digits", "model"])["test_accuracy"]
    return grouped.agg(seeds="count", mean="mean", sd="std", low="min", high="max").unstack("model")


def plot_seed_curve(seeds, *, ax=None, save=None):
    """Test accuracy against training digits, one line per model: the mean over seeds (a marker at every
    size the model was trained at), a band from the lowest to the highest seed, every seed as a dot. The
    x-ticks are every size any model was trained at; a model's line is broken at a size it was not trained at."""
    from .plotting import _finish, _new_axes

    fig, ax = _new_axes(ax, figsize=(6.5, 4))
    sizes = np.array(sorted(seeds["training_digits"].unique()))
    for (model, runs), marker in zip(seeds.groupby("model"), ("s", "o", "^", "D")):
        by_size = runs.groupby("training_digits")["test_accuracy"]
        mean, low, high = (getattr(by_size, f)().reindex(sizes) for f in ("mean", "min", "max"))  # NaN: not trained
        line, = ax.plot(sizes, mean, marker=marker, label=f"{model}: mean of {by_size.size().max()} seeds")
        ax.fill_between(sizes, low, high, color=line.get_color(), alpha=0.2)
        ax.scatter(runs["training_digits"], runs["test_accuracy"], s=8, color=line.get_color(), alpha=0.6)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xticks([], minor=True)
    ax.set(xlabel="training digits (logarithmic scale; the same number of steps at every size)", ylabel="test accuracy (360 digits)",
           title="ViT and CNN over seeds: mean, range (band) and each seed (dots)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    _finish(fig, save)
    return ax


def print_seed_choices(tuning, seeds, validation_digits: int = 288):
    """Print each network's chosen setting, by how many validation digits it beat the runner-up, and the
    sizes and seeds it was trained with."""
    for network, rows in seeds.groupby("model"):
        setting = {k: rows.iloc[0][k].item() for k in SEED_GRIDS[network]}  # numpy scalars print as np.float64(...)
        setting = {k: int(v) if float(v).is_integer() and k != "lr" else v for k, v in setting.items()}
        scores = tuning.loc[tuning["model"] == network, "validation_accuracy"].sort_values(ascending=False)
        margin = round((scores.iloc[0] - scores.iloc[1]) * validation_digits) if len(scores) > 1 else None
        ties = int((scores == scores.iloc[0]).sum())
        print(f"{network}: chosen {setting} ({len(scores)} settings tried; it is right on {margin} more of the "
              f"{validation_digits} validation digits than the runner-up"
              + (f", tied with {ties - 1} other(s)" if ties > 1 else "") + "), "
              f"{rows['seed'].nunique()} seeds at each of {sorted(int(n) for n in rows['training_digits'].unique())} "
              "training digits")


def _chosen_vit_validation(seeds) -> "pd.Series":
    """Validation accuracy of the ViT's chosen setting with all training digits, one value per seed."""
    full = seeds[(seeds["model"] == "ViT") & (seeds["training_digits"] == seeds["training_digits"].max())]
    return full.set_index("seed")["validation_accuracy"].sort_index()


def print_chosen_vit_over_seeds(tuning, seeds, untuned_test_accuracy: float):
    """The ViT's chosen setting with all training digits: its validation score in the tuning (seed 0) beside its
    mean over the seeds and the runner-up's score, then its test accuracy over the seeds beside
    `untuned_test_accuracy`, one run of the untuned recipe."""
    from . import evaluation

    validation = _chosen_vit_validation(seeds)
    scores = tuning.loc[tuning["model"] == "ViT", "validation_accuracy"].sort_values(ascending=False)
    full = seeds[(seeds["model"] == "ViT") & (seeds["training_digits"] == seeds["training_digits"].max())]
    test = full["test_accuracy"]
    print(f"the ViT's chosen setting, all training digits, on validation: {validation.loc[0]:.1%} with seed 0 (the score "
          f"it was chosen on), {evaluation.over_seeds(validation, percent=True, digits=1)}; the runner-up setting "
          f"{scores.iloc[1]:.1%} (seed 0 only)")
    inside = test.min() <= untuned_test_accuracy <= test.max()
    print(f"on test: the chosen setting {evaluation.over_seeds(test, percent=True, digits=1)}; the untuned recipe's "
          f"single run {untuned_test_accuracy:.1%}, {'inside' if inside else 'outside'} the range of the seeds")


def print_vit_choice_checks(seeds, beyond, shift, validation_digits: int = 288):
    """The two checks of the ViT's choice by scripts/vit_digits_seeds.py, on validation with all training digits:
    each setting past the grid's corner (`beyond`, seed 0) beside the chosen setting's seed 0, and the chosen
    setting with a sideways shift of up to 1 pixel (`shift`) beside the same seeds without a shift (paired t over seeds)."""
    from . import evaluation

    plain = _chosen_vit_validation(seeds)
    spread = evaluation.over_seeds(plain, percent=True, digits=1)
    print(f"past the grid's corner, seed 0 (the grid's choice: {plain.loc[0]:.1%} with seed 0; {spread}):")
    for _, row in beyond.iterrows():
        print(f"  lr {row['lr']:g}, {int(row['steps'])} steps, dropout {row['dropout']:g}: {row['validation_accuracy']:.1%} "
              f"({round((row['validation_accuracy'] - plain.loc[0]) * validation_digits):+d} validation digits)")
    shifted = shift.set_index("seed")["validation_accuracy"].sort_index()
    same = plain.loc[shifted.index]
    digits = ", ".join(f"{round(d * validation_digits):+d}" for d in shifted - same)
    print(f"the chosen setting with a sideways shift of up to 1 pixel, seeds {', '.join(map(str, shifted.index))}: "
          f"{shifted.mean():.1%} against {same.mean():.1%} without a shift (mean); shift minus none, in validation "
          f"digits per seed: {digits}; {evaluation.paired_t(shifted, same, percent=True, digits=1)}")


def seed_means(seeds) -> dict:
    """{(model, training digits): `utils.evaluation.over_seeds` of the test accuracy}, for a summary."""
    from . import evaluation

    return {key: evaluation.over_seeds(runs["test_accuracy"], percent=True, digits=1)
            for key, runs in seeds.groupby(["model", "training_digits"])}


def print_paired_seed_tests(seeds, per_seed: bool = False):
    """ViT minus CNN on the same test digits at every size where both were trained: one paired bootstrap
    (`utils.evaluation.paired_bootstrap`) of each test digit's share of the seeds that read it right, the ViT's
    against the CNN's, over the seeds both have. With ``per_seed=True``, also McNemar's test for each seed
    (`utils.evaluation.mcnemar`)."""
    from . import evaluation

    labels = test_labels()
    for size, rows in seeds.groupby("training_digits"):
        pairs = rows.pivot(index="seed", columns="model", values="test_predictions").dropna()
        if not {"ViT", "CNN"} <= set(pairs.columns) or pairs.empty:
            continue  # the CNN alone was trained at this size
        right = {m: np.array([seed_predictions(p) == labels for p in pairs[m]]) for m in ("ViT", "CNN")}
        errors = {m: (~r).sum(1).mean() for m, r in right.items()}
        print(f"{size} training digits: mean errors ViT {errors['ViT']:.1f}, CNN {errors['CNN']:.1f} "
              f"({errors['ViT'] / max(errors['CNN'], 1e-9):.1f} ViT errors per CNN error); ViT minus CNN on the "
              f"same {len(labels)} test digits, each read by its share of the {len(pairs)} seeds: "
              f"{evaluation.paired_bootstrap(right['ViT'].mean(0), right['CNN'].mean(0), percent=True)}")
        if per_seed:
            for seed, vit_right, cnn_right in zip(pairs.index, right["ViT"], right["CNN"]):
                print(f"  seed {seed}: {evaluation.mcnemar(vit_right, cnn_right)}")


# ---- the locality controls (scripts/vit_digits_locality.py) -------------------------------------------------

def locality_runs(locality, seeds):
    """The test runs of notebook 04's locality study on all training digits, one row per (model, seed) with its
    `test_predictions`, `test_accuracy` and `seconds`: the ViT with 1 x 1 patches and the MLP from `locality` (the
    records of `scripts/vit_digits_locality.py`, stage "seeds"; with its `--part shuffled` record concatenated,
    also the 2 x 2 ViT on shuffled pixels, stage "shuffled"), the 2 x 2 ViT ("ViT 2 x 2") and the CNN from `seeds`
    (as `load_seed_records` returns them) at the same number of training digits."""
    import pandas as pd

    new = locality[locality["stage"].isin(["seeds", "shuffled"])]
    if new.empty:
        raise ValueError("locality_runs: the locality record has no 'seeds' rows")
    size = int(new["training_digits"].iloc[0])
    old = seeds[seeds["training_digits"] == size].replace({"model": {"ViT": "ViT 2 x 2"}})
    runs = pd.concat([old, new], ignore_index=True)[["model", "seed", "test_predictions", "seconds"]]
    labels = test_labels()
    runs["test_accuracy"] = [float((seed_predictions(p) == labels).mean()) for p in runs["test_predictions"]]
    return runs


def locality_comparisons(runs, pairs=(("ViT 1 x 1", "ViT 2 x 2"), ("ViT 1 x 1", "CNN"), ("MLP", "ViT 2 x 2"),
                                      ("MLP", "CNN")), paired_seeds=False):
    """A minus B for each pair of models in `runs` (`locality_runs`), two ways. "over seeds": what retraining
    changes; by default `utils.evaluation.welch_t` over all the seeds each model has, since seed k of two
    different architectures shares nothing but its number; with ``paired_seeds=True``, for runs that share their
    initial weights and batch order seed by seed (the shuffle test's CNN on shuffled and on written digits),
    `utils.evaluation.paired_t` over the seeds both have. Beside Welch's p, the exact permutation test's
    (`utils.evaluation.permutation_p`), which does not lean on normality. "over test digits": `utils.evaluation.paired_bootstrap`
    over the 360 test digits of each digit's share of a model's seeds (those used over seeds) that read it right
    (the same digits for both models; what the sampling of test digits changes, for these trained models).
    A DataFrame with one row per pair, as `utils.evaluation.table` prints it."""
    import pandas as pd

    from . import evaluation

    labels = test_labels()
    right = {(m, s): seed_predictions(p) == labels for m, s, p in runs[["model", "seed", "test_predictions"]].itertuples(index=False)}
    rows = {}
    for a, b in pairs:
        seeds = {m: sorted(s for n, s in right if n == m) for m in (a, b)}
        if paired_seeds:
            seeds = dict.fromkeys((a, b), sorted(set(seeds[a]) & set(seeds[b])))
        if min(len(v) for v in seeds.values()) < 2:
            raise ValueError(f"locality_comparisons: {a} and {b} have seeds {seeds}; need at least 2 each")
        scores = {m: [right[m, s].mean() for s in seeds[m]] for m in (a, b)}
        test = evaluation.paired_t if paired_seeds else evaluation.welch_t
        over_seeds = test(scores[a], scores[b], percent=True, digits=1)
        exact = "" if paired_seeds else f"; exact permutation {evaluation.format_p(evaluation.permutation_p(scores[a], scores[b]))}"
        over_digits = evaluation.paired_bootstrap(np.mean([right[a, s] for s in seeds[a]], 0),
                                                  np.mean([right[b, s] for s in seeds[b]], 0), percent=True)
        rows[f"{a} minus {b}"] = {"seeds": f"{len(seeds[a])} and {len(seeds[b])}",
                                  "over seeds": f"{over_seeds} ({'paired t' if paired_seeds else 'Welch t'}{exact})",
                                  "over test digits (paired bootstrap)": str(over_digits)}
    return pd.DataFrame(rows).T


def print_locality_runs(locality, runs):
    """The MLP's choice on validation and each model's parameters and test accuracy over its seeds."""
    from . import evaluation

    tune = locality[locality["stage"] == "tune"]
    best = tune.loc[tune["validation_accuracy"].idxmax()]
    print("MLP on validation (seed 0): " + "; ".join(f"lr {r.lr:g} and {r.steps} steps {r.validation_accuracy:.1%}"
                                                      for r in tune.itertuples())
          + f"; chosen lr {best['lr']:g}, {best['steps']} steps")
    sizes = locality.groupby("model")["parameters"].first().to_dict()
    sizes.update({"CNN": sum(p.numel() for p in SmallCNN().parameters()),  # the seed study's models, as tuned
                  "ViT 2 x 2": sum(p.numel() for p in build_digits_model("ViT").parameters())})
    print("test accuracy (the 360 test digits, all 1,149 training digits) over seeds:")
    width = max(len(m) for m in runs["model"].unique())
    for model, rows in runs.groupby("model", sort=False):
        size = f", {int(sizes[model]):,} parameters" if model in sizes else ""
        print(f"  {model:{width}s} {evaluation.over_seeds(rows['test_accuracy'], percent=True, digits=1)}{size}")


__all__ = [
    "DigitsMLP", "dense_share", "put_stem", "linear_probe", "probe_table", "PROBE_C", "print_cls_attention_summary", "locality_runs", "locality_comparisons", "print_locality_runs", "SEED_GRIDS", "SEED_GRID_BEYOND", "load_seed_records", "summarise_cls_attention", "describe_run", "swin_attention_flops", "seed_error_ratios", "cnn_over_seeds", "write_records", "seed_means", "build_digits_model", "pooled_features", "print_seed_choices", "print_chosen_vit_over_seeds", "print_vit_choice_checks", "print_paired_seed_tests", "test_labels", "seed_predictions", "seed_summary", "plot_seed_curve",
    "DIGITS_SIZE",
    "DIGIT_NAMES",
    "RandomShift",
    "SmallCNN",
    "accuracy",
    "choose_on_validation",
    "cls_attention",
    "digit_to_image",
    "digits_arrays",
    "digits_processor",
    "embed_patches_by_matmul",
    "layer_flops",
    "plot_data_efficiency",
    "load_digits_dataset",
    "patchify",
    "predict",
    "prepare",
    "score",
    "score_table",
    "show_cls_attention",
    "show_patch_grid",
    "small_vit_config",
    "subset",
    "train_digits",
    "video_token_counts",
]


def word_form_table(text: str, acts: dict):
    """How often `text` names each act (notebook 04's reporting bias). `acts` maps an act to
    (how often it happens, the words that name it); a word is a run of the letters a-z of the
    lower-cased text. Returns one row per act: how often it happens, the times its words are
    written in all, and each word's own count, most frequent first (words never written left out)."""
    import re
    from collections import Counter

    import pandas as pd

    if not acts:
        raise ValueError("acts is empty: give at least one act and the words that name it")
    words = Counter(re.findall(r"[a-z]+", text.lower()))
    rows = []
    for act, (how, forms) in acts.items():
        ranked = sorted(forms, key=lambda form: -words[form])
        rows.append((act, how, sum(words[form] for form in forms),
                     ", ".join(f"{form} {words[form]}" for form in ranked if words[form])))
    return pd.DataFrame(rows, columns=["act", "happens", "times written", "the words written"]).set_index("act")
