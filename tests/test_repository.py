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
    assert f"git clone {REPO_URL}.git" in text  # the first step of the quickstart
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
    # Saved widget state makes the site's page fetch require.js and the widget manager off-site.
    assert "widgets" not in nb.metadata, "widget state saved: utils.notebooks run drops it"
    text = json.dumps(nb)
    assert str(REPO_ROOT) not in text and "site-packages" not in text


# What JupyterLab 4 writes into a notebook it opens with ipykernel's kernel. Saved like this, a
# notebook opens unmodified (JupyterLab rewrites a "Python 3" display name, so closing asks to save).
JUPYTERLAB_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_kernelspec_is_what_jupyterlab_writes(path):
    assert nbformat.read(path, as_version=4).metadata["kernelspec"] == JUPYTERLAB_KERNELSPEC


def test_the_kernelspec_is_ipykernels_own():
    """JupyterLab copies the display name and language from the kernel's spec: the installed one."""
    from jupyter_client.kernelspec import KernelSpecManager

    from utils.notebooks import KERNELSPEC

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert KERNELSPEC == JUPYTERLAB_KERNELSPEC
    assert {"display_name": spec.display_name, "language": spec.language, "name": "python3"} == KERNELSPEC


# A dollar that MathJax would read as the start of math: not escaped (\$), not in code.
_CODE = re.compile(r"```.*?```|~~~.*?~~~|`[^`\n]*`", re.S)
_DOLLAR = re.compile(r"(?<!\\)\$")
# An amount of money right after a dollar: $4.6M, $1.48, $30 million, $2,000 (a math span such as
# $4w$ or $5 + 2r$ does not look like this), followed by prose rather than a closing dollar.
_AMOUNT = re.compile(r"\$\d[\d,]*(?:\.\d+)?(?:\s?(?:[kKMBT]|bn|thousand|million|billion|trillion))?(?![\w$^_])")


def currency_dollars(markdown):
    """The unescaped dollars in `markdown` that start an amount of money instead of math."""
    text = _CODE.sub(lambda m: " " * len(m.group()), markdown)
    text = re.sub(r"\$\$.*?\$\$", lambda m: " " * len(m.group()), text, flags=re.S)  # display math
    found, dollars = [], [m.start() for m in _DOLLAR.finditer(text)]
    i = 0
    while i < len(dollars):
        start = dollars[i]
        end = dollars[i + 1] if i + 1 < len(dollars) else None
        span = text[start:end + 1] if end is not None else text[start:]
        amount = _AMOUNT.match(text, start)
        prose = re.search(r"(?<![\\\w])[A-Za-z]{3,}\s+[A-Za-z]{3,}", span[1:-1] if end else span)
        if amount and (end is None or prose):
            found.append(text[start:start + 30].split("\n")[0])
            i += 1  # a currency dollar pairs with nothing: the next dollar starts afresh
        else:
            i += 2
    return found


def test_the_currency_check_tells_money_from_math():
    assert currency_dollars("GPT-3 cost $4.6M on V100s and later $4.6M again.") == ["$4.6M on V100s and later $4.6M", "$4.6M again."]
    assert currency_dollars(r"GPT-3 cost \$4.6M on V100s and later \$4.6M again.") == []
    assert currency_dollars("a price of $30 per hour") == ["$30 per hour"]
    for math in ["with $d = 4$, so it keeps", "reaches $4w$ with $d = 4$", "more than $5 + 2r$ blocks",
                 "about $0.02 \\times 128^2 \\approx 330$ kept pairs", "`echo $5`", "$$2 + 2 = 4$$"]:
        assert currency_dollars(math) == [], math


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_unescaped_currency_dollar_in_markdown(path):
    """JupyterLab, GitHub and nbviewer read $...$ as math: a price is written \\$4.6M."""
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type == "markdown":
            assert not currency_dollars(cell.source), f"cell {i}: escape the dollar: {currency_dollars(cell.source)}"


README_LAB_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && "
                      ".venv/bin/jupyter lab notebooks/")


def test_the_readme_keeps_its_two_commands():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    test_command = re.search(r"# README test command\n(.+)\n", ci).group(1).strip()
    blocks = re.findall(r"```bash\n(.*?)```", readme(), re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    assert README_LAB_COMMAND in lines and test_command in lines


def test_the_torch_range_is_stated_once_everywhere():
    """The oldest torch the course ran on: the set-up cell, the README and requirements-colab.txt agree."""
    from utils.core import TORCH_OLDEST

    pinned = pins("requirements.txt")["torch"]
    assert f'torch.__version__ < "{TORCH_OLDEST}"' in SETUP_CELL
    assert f"torch {TORCH_OLDEST} to {pinned}" in readme()
    assert f"torch {TORCH_OLDEST} to {pinned}" in (REPO_ROOT / "requirements-colab.txt").read_text()
