"""Create and run the course's notebooks.

python -m utils.notebooks new NN_name "Title" "Two-line promise"
python -m utils.notebooks run [NOTEBOOK ...] [--inplace] [--online [--check]]
    executes notebooks headless (offline unless --online) and prints a table of each
    notebook's status and wall time; with no NOTEBOOK, all of notebooks/*.ipynb.
    --check (with --online) then asserts what the real checkpoints must give
    (utils.hub.EXPECTATIONS) in each notebook's namespace.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import nbformat

from .core import REPO_ROOT, REPO_URL, TORCH_OLDEST
from .hub import EXPECTATIONS

NOTEBOOKS = REPO_ROOT / "notebooks"
IGNORE_OUTPUT = {"tags": ["nbval-ignore-output"]}
# What JupyterLab writes for ipykernel's kernel: a notebook saved with it opens unmodified.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

# The first code cell of every notebook (tests/test_repository.py checks they all match).
SETUP_CELL = f'''\
# Set-up. In Colab: fetch the course and install what Colab lacks (never torch).
# Everywhere: import the course's utils, seed, quiet the logs, print the versions.
import os, pathlib, subprocess, sys
REPO_URL = "{REPO_URL}"
if "google.colab" in sys.modules and not pathlib.Path("course").exists():
    subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "course"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "course/requirements-colab.txt"], check=True)
    os.chdir("course/notebooks")
here = pathlib.Path.cwd()
sys.path.insert(0, str(next(p for p in [here, *here.parents] if (p / "utils").is_dir())))
import torch  # torch.__version__ is a TorchVersion: "2.9.1" < "2.11" compares as versions, not as text
if torch.__version__ < "{TORCH_OLDEST}":
    print(f"torch {{torch.__version__}} is older than {TORCH_OLDEST}, the oldest version this notebook supports: a cell may fail.")
import utils
utils.setup()'''


def colab_url(name):
    """Where Colab opens notebooks/NAME.ipynb of the course's repository (REPO_URL, branch main)."""
    return (f"https://colab.research.google.com/github/{REPO_URL.removeprefix('https://github.com/')}"
            f"/blob/main/notebooks/{name}.ipynb")


def badge(name):
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(name)})"


def new(name, title, promise):
    path = NOTEBOOKS / f"{name}.ipynb"
    if path.exists():
        raise FileExistsError(f"notebooks/{name}.ipynb already exists")
    nb = nbformat.v4.new_notebook()
    nb.metadata.update({"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\n{promise}\n\n{badge(name)}"),
                nbformat.v4.new_code_cell(SETUP_CELL, metadata=IGNORE_OUTPUT)]
    NOTEBOOKS.mkdir(exist_ok=True)
    nbformat.write(nb, path)
    return path


def execute(path, inplace=False, online=False, timeout=900, checks=()):
    """Run one notebook in a fresh kernel of this environment; returns (status, seconds).

    `checks` are (what, expression) pairs evaluated in the notebook's namespace after its last
    cell; the status names the first that is not True.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    if not online:
        os.environ["HF_HUB_OFFLINE"] = "1"
    # No kernel warning lines between the table's rows: the debugger's two about frozen modules,
    # and ipykernel's about TCP without encryption (the kernel is local to this process).
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            record_timing=False, store_widget_state=False,
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    start = time.perf_counter()
    try:
        client.reset_execution_trackers()
        with client.setup_kernel():  # what NotebookClient.execute does, then the checks
            info = client.wait_for_reply(client.kc.kernel_info())
            if "language_info" in info["content"]:
                nb.metadata["language_info"] = info["content"]["language_info"]
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            status = "ok"
            for what, expression in checks:
                probe = nbformat.v4.new_code_cell(f"print(bool({expression}))")
                nb.cells.append(probe)  # for the run only: removed before anything is saved
                try:
                    client.execute_cell(probe, len(nb.cells) - 1)
                    answer = "".join(o.get("text", "") for o in probe.outputs).strip()
                except CellExecutionError as err:
                    answer = f"{err.ename}: {err.evalue}"[:80]
                finally:
                    nb.cells.pop()
                if answer != "True":
                    status = f"FAILED check: {what} ({answer})"
                    break
    except Exception as err:  # noqa: BLE001 - reported in the table, not hidden
        status = f"FAILED: {type(err).__name__}: {str(err).strip().splitlines()[-1][:120]}"
    seconds = time.perf_counter() - start
    if inplace and status == "ok":
        nb.metadata.pop("widgets", None)  # tqdm's bars: saved state makes a page load scripts off-site
        nbformat.write(hide_solution_outputs(nb), path)
    return status, seconds


def hide_solution_outputs(nb):
    """Saved without the outputs of its worked solutions (code cells collapsed by `jupyter.source_hidden`), since an
    output states the answer and Colab and GitHub show outputs under a collapsed form. The cells still run under
    nbval, which ignores their output (the `nbval-ignore-output` tag) and fails on their closing assert. Returns nb."""
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("jupyter", {}).get("source_hidden"):
            cell.outputs = []
            tags = cell.metadata.setdefault("tags", [])
            if "nbval-ignore-output" not in tags:
                tags.append("nbval-ignore-output")
    return nb


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_new = sub.add_parser("new", help="create a notebook with the title and set-up cell")
    p_new.add_argument("name"), p_new.add_argument("title"), p_new.add_argument("promise")
    p_run = sub.add_parser("run", help="execute notebooks headless and print a status table")
    p_run.add_argument("notebooks", nargs="*")
    p_run.add_argument("--inplace", action="store_true", help="save the outputs into the notebook")
    p_run.add_argument("--online", action="store_true", help="do not force HF_HUB_OFFLINE=1")
    p_run.add_argument("--check", action="store_true",
                       help="with --online: assert what the real checkpoints give (utils.hub.EXPECTATIONS)")
    args = parser.parse_args(argv)
    if getattr(args, "check", False) and not args.online:
        parser.error("--check needs --online: the expectations are about the real checkpoints")
    if args.command == "new":
        print(f"created {new(args.name, args.title, args.promise).relative_to(REPO_ROOT)}")
        return 0
    paths = [Path(p).resolve() for p in args.notebooks] or sorted(NOTEBOOKS.glob("*.ipynb"))
    if not paths:
        print("no notebooks found")
        return 1
    print(f"{'notebook':<34} {'status':<8} {'seconds':>8}", flush=True)
    failed, total = 0, 0.0
    for path in paths:
        checks = EXPECTATIONS.get(path.stem, []) if args.check else []
        status, seconds = execute(path, inplace=args.inplace, online=args.online, checks=checks)
        failed += status != "ok"
        total += seconds
        print(f"{path.name:<34} {status:<8} {seconds:8.1f}", flush=True)
    print(f"{'total':<34} {'ok' if not failed else f'{failed} failed':<8} {total:8.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
