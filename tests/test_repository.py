"""The repository agrees with itself: pins, README, Colab links, set-up cells, CI command."""
import json
import re

import nbformat
import pytest

from utils.core import REPO_ROOT, REPO_URL
from utils.notebooks import SETUP_CELL, badge

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
PIN = re.compile(r"^\s*(?:-\s*)?([A-Za-z0-9_.-]+)==([^\s#]+)")


def pins(path):
    found = {}
    for line in (REPO_ROOT / path).read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def test_environment_yml_pins_what_requirements_txt_pins():
    assert pins("environment.yml") == pins("requirements.txt")


def test_every_requirement_is_pinned():
    lines = [l for l in (REPO_ROOT / "requirements.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert all("==" in l for l in lines), lines
    assert pins("requirements.txt")["torch"] == "2.13.0"


def test_colab_requirements_agree_and_leave_torch_alone():
    colab, full = pins("requirements-colab.txt"), pins("requirements.txt")
    assert "torch" not in colab
    assert all(full[name] == version for name, version in colab.items())


def readme():
    return (REPO_ROOT / "README.md").read_text()


def test_readme_links_every_notebook_to_colab_through_the_one_url():
    text = readme()
    for path in NOTEBOOKS:
        assert badge(path.stem) in text, f"README has no Colab badge for {path.name}"
    urls = set(re.findall(r"https://colab\.research\.google\.com/github/([^/]+/[^/]+)/", text))
    assert urls == {REPO_URL.removeprefix("https://github.com/")}


def test_ci_runs_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    command = re.search(r"# README test command\n(.+)\n", ci).group(1).strip()
    assert command in readme()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_shape(path):
    nb = nbformat.read(path, as_version=4)
    first, setup = nb.cells[0], next(c for c in nb.cells if c.cell_type == "code")
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert badge(path.stem) in first.source
    assert setup.source == SETUP_CELL, "the set-up cell differs from utils.notebooks.SETUP_CELL"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert not cell.outputs or cell.execution_count is not None, f"cell {i}: outputs but unrun"
        for out in cell.outputs:
            assert out.output_type != "error", f"cell {i} was committed with an error"
            assert "image/svg+xml" not in out.get("data", {}), f"cell {i}: SVG output, use PNG"
        if cell.source.startswith("%%hub"):
            assert "nbval-ignore-output" in cell.metadata.get("tags", []), f"cell {i}: %%hub untagged"
    text = json.dumps(nb)
    assert str(REPO_ROOT) not in text and "site-packages" not in text
