"""The small library behind the course's notebooks."""
from .core import REPO_ROOT, REPO_URL, data_path, images_path, relative, seed_everything, setup
from .plotting import (label_points, plot_benchmark, plot_differences, plot_heatmap, plot_power_law, plot_training,
                       plot_waveform_spectrogram, set_figsize, show_images, show_masks)
from .source import print_source, show_source, source_text
from .training import train

__all__ = [
    "REPO_ROOT", "REPO_URL", "data_path", "images_path", "relative", "seed_everything", "setup",
    "CHECKPOINTS", "hub_available", "print_source", "show_source", "source_text", "train",
    "label_points", "plot_benchmark", "plot_differences", "plot_heatmap", "plot_power_law", "plot_training",
    "plot_waveform_spectrogram",
    "set_figsize", "show_images", "show_masks",
]


def __getattr__(name):  # utils.hub is imported on first use, so that `python -m utils.hub` runs cleanly
    if name in ("CHECKPOINTS", "hub_available", "hub"):
        import importlib

        hub = importlib.import_module(".hub", __name__)  # binds utils.hub too
        return hub if name == "hub" else getattr(hub, name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")
