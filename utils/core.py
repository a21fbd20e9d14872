"""Paths and the one call that prepares a notebook."""
import logging
import os
import random
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The course's repository, defined once (tests check the README and the notebooks agree).
REPO_URL = "https://github.com/nlp-with-transformers-future/course"


def data_path(*parts):
    """A path inside data/ (relative parts joined)."""
    return REPO_ROOT.joinpath("data", *parts)


def images_path(*parts):
    """A path inside images/ (relative parts joined)."""
    return REPO_ROOT.joinpath("images", *parts)


def relative(path):
    """`path` relative to the repository, for printing (never show a machine's absolute path)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.name


def seed_everything(seed=0):
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def library_versions():
    import accelerate
    import datasets
    import torch
    import transformers

    return {m.__name__: m.__version__ for m in (torch, transformers, datasets, accelerate)}


def setup(seed=0, quiet=True):
    """Prepare a notebook: seeds, quiet library logging, PNG figures, the `%%hub` magic.

    Prints the library versions, the device and whether the Hub can be reached.
    """
    import torch

    from .hub import hub_available, register_hub_magic

    seed_everything(seed)
    if quiet:
        import datasets
        import transformers

        transformers.logging.set_verbosity_error()
        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
        logging.getLogger("accelerate").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=FutureWarning)
    try:  # figures as PNG (nbval compares SVG as text)
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:
        pass
    register_hub_magic()
    versions = " | ".join(f"{k} {v}" for k, v in library_versions().items())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(versions)
    print(f"device: {device} | Hugging Face Hub: {'reachable' if hub_available() else 'offline'}")
