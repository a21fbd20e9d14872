"""Paths and the one call that prepares a notebook."""
import logging
import os
import random
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The course's repository, defined once (tests check the README and the notebooks agree).
REPO_URL = "https://github.com/nlp-with-transformers-future/course"
# The oldest torch the notebooks and tests were run on (the set-up cell says so below it; the README
# and requirements-colab.txt state the same range, tests/test_repository.py checks they agree).
TORCH_OLDEST = "2.11"
# pandas' display in a notebook. JupyterLab wraps an output line wider than its output area at any
# character (mid-word, mid-number); with its default 13 px font and the file browser open, the area
# holds 106 characters in a browser window 1280 px wide (73 at 1024, 117 at 1366; measured in
# JupyterLab 4.6). So a table's repr is split into column blocks at most 100 characters wide
# (`print(df.to_string())` ignores this: print the frame itself), and text columns are shown up to
# 200 characters (pandas cuts them at 50 by default).
PANDAS_OPTIONS = {"display.width": 100, "display.max_colwidth": 200}


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


def script_command(script, argv=None):
    """The command line a record stores: `python scripts/NAME.py` and the arguments (`argv`, or the
    process's own when None), quoted so that pasting it into a shell reruns the script."""
    import shlex
    import sys

    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", f"scripts/{Path(script).name}", shlex.join(args)]).strip()


def run_provenance():
    """When a scoring run started (UTC, ISO 8601) and the code it ran: the repository's commit, and whether files
    tracked by git had uncommitted changes. A test record stores it, so that its history shows the split's plan was
    committed before the run began. Outside a git checkout the commit is None."""
    import datetime
    import subprocess

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        git = lambda *args: subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout  # noqa: E731
        commit, changed = git("rev-parse", "HEAD").strip(), bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.CalledProcessError):
        commit, changed = None, None
    return {"started": started, "code commit": commit, "uncommitted changes": changed}


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
    """Prepare a notebook: seeds, quiet library logging, PNG figures with a description, pandas'
    display options (PANDAS_OPTIONS), the `%%hub` magic.

    Prints the library versions, the device and whether the Hub can be reached.
    """
    import pandas as pd
    import torch

    from .hub import hub_available, register_hub_magic
    from .plotting import describe_inline_figures

    seed_everything(seed)
    if quiet:
        import datasets
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()  # "Loading weights", "Writing shards"
        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
        logging.getLogger("accelerate").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=FutureWarning)
    try:  # in a notebook: inline figures, as PNG (nbval compares SVG as text)
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
            get_ipython().run_line_magic("matplotlib", "inline")
        set_matplotlib_formats("png")
    except ImportError:
        pass
    describe_inline_figures()
    for option, value in PANDAS_OPTIONS.items():
        pd.set_option(option, value)
    register_hub_magic()
    versions = " | ".join(f"{k} {v}" for k, v in library_versions().items())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(versions)
    print(f"device: {device} | Hugging Face Hub: {'reachable' if hub_available() else 'offline'}")
