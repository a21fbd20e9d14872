"""utils.setup(): what every notebook's set-up cell prepares."""
import pandas as pd
import pytest

import utils
from utils import core


@pytest.fixture
def restored_pandas():
    yield
    for option in core.PANDAS_OPTIONS:
        pd.reset_option(option)


def test_setup_sets_pandas_display_options(monkeypatch, capsys, restored_pandas):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    utils.setup()
    assert "Hugging Face Hub: offline" in capsys.readouterr().out
    for option, value in core.PANDAS_OPTIONS.items():
        assert pd.get_option(option) == value, option
    assert core.PANDAS_OPTIONS["display.width"] <= 100  # fits the output area of a laptop's browser
    # a wide table prints in blocks no wider than that, and a long sentence is not cut at 50
    sentence = "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES AND WE ARE GLAD TO WELCOME HIS GOSPEL"
    wide = pd.DataFrame({f"column {i}": [1.5, 2.25] for i in range(20)})
    for check in ("in_interactive_session", "in_ipython_frontend"):  # as in a Jupyter kernel
        monkeypatch.setattr(pd.io.formats.console, check, lambda: True)
    with pd.option_context("display.max_columns", 20):  # its default where stdout is no terminal
        lines = repr(wide).splitlines()
    assert max(map(len, lines)) <= core.PANDAS_OPTIONS["display.width"] < len(wide.to_string().splitlines()[0])
    assert sentence in repr(pd.DataFrame({"text": [sentence]}))


def torch_check_lines():
    """The set-up cell's lines that compare torch's version with the oldest the course ran on."""
    from utils.notebooks import SETUP_CELL

    lines = SETUP_CELL.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("import torch"))
    return "\n".join(lines[start:lines.index("import utils")])


@pytest.mark.parametrize("version, says", [("2.10.0+cu126", True), ("2.9.1", True), ("2.11.0+cu130", False),
                                           ("2.13.0+cpu", False)])
def test_the_setup_cell_says_in_one_line_when_torch_is_older(monkeypatch, capsys, version, says):
    import torch
    from torch.torch_version import TorchVersion

    monkeypatch.setattr(torch, "__version__", TorchVersion(version))
    exec(torch_check_lines(), {})
    out = capsys.readouterr().out
    if says:
        assert out == f"torch {version} is older than {core.TORCH_OLDEST}, the oldest version this notebook supports: a cell may fail.\n"
    else:
        assert out == ""


def test_run_provenance_names_the_start_and_the_commit(monkeypatch, tmp_path):
    import datetime
    import re

    record = core.run_provenance()
    started = datetime.datetime.fromisoformat(record["started"])
    assert started.tzinfo is not None and abs(datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() < 60
    if (core.REPO_ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", record["code commit"]) and isinstance(record["uncommitted changes"], bool)
    monkeypatch.setattr(core, "REPO_ROOT", tmp_path)  # no git checkout there
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert core.run_provenance()["code commit"] is None
