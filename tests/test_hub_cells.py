"""Every `%%hub` cell of every notebook, executed against tiny stand-ins of the real checkpoints.

Two ways, as a reader meets them (tests/hub_standins.py builds the stand-ins and serves them):
- online: a kernel whose HF_ENDPOINT is the stand-in Hub on 127.0.0.1, so that the set-up cell
  reports the Hub as reachable and transformers, huggingface_hub and datasets download for real;
- offline: a kernel with HF_HUB_OFFLINE=1 and a cache filled by `python -m utils.hub download`
  (the classroom path); the stand-in Hub must then see no request at all.
Each notebook runs, in one kernel per way with its namespace reset in between, its set-up cell,
its `%%hub` cells and the earlier cells these need: those that define (assign, import, def, or
mutate by item or attribute) a name that a kept later cell reads, found anew on every run. Cells
that only train, time or plot for the reader are left out, so the stand-ins are met in seconds. The stand-ins have random weights, so what the
cells print is not compared; every `%%hub` cell must run (no "Skipped") and no cell may raise.
The failure modes (a checkpoint missing, a download cut mid-file, the Hub gone after the check)
each print one line, later cells naming that checkpoint say they were skipped, the rest runs,
and a bug in a cell still raises with the cell's own line in the traceback.
"""
import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

import hub_standins
from cell_reads import reads_and_binds
from utils.core import REPO_ROOT
from utils.notebooks import SETUP_CELL

NOTEBOOKS = REPO_ROOT / "notebooks"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SUMMARY = []  # (way, notebook, cell index, first line printed), shown with pytest -s


def cell_names(source):
    """(names a cell defines, names it reads from earlier cells, names it binds on every path), a cell
    magic's body read as Python. Over-approximate: names bound inside functions count as defined,
    `x[k] = ...` or `x.a = ...` counts as defining x; reads and binds are those of tests/cell_reads.py
    (a comprehension's or a loop's own variable is not read from an earlier cell)."""
    from IPython.core.inputtransformer2 import TransformerManager

    if source.startswith("%%"):
        source = source.partition("\n")[2]
    tree = ast.parse(TransformerManager().transform_cell(source))
    read, binds = reads_and_binds(tree)
    defined = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            defined.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Attribute, ast.Subscript)) and not isinstance(node.ctx, ast.Load):
            while isinstance(node, (ast.Attribute, ast.Subscript)):
                node = node.value
            if isinstance(node, ast.Name):
                defined.add(node.id)
    return defined, read, binds


def hub_cells(path):
    """The set-up cell, the `%%hub` cells of `path` and the earlier code cells they need, as (index, source)."""
    cells = [(i, c.source) for i, c in enumerate(nbformat.read(path, as_version=4).cells)
             if c.cell_type == "code"]
    last = max((k for k, (_, source) in enumerate(cells) if source.startswith("%%hub")), default=None)
    if last is None:
        return []
    kept, needed = [], set()
    for k in range(last, -1, -1):  # backwards: a cell is kept if a kept later cell reads what it defines
        defined, read, binds = cell_names(cells[k][1])
        if k == 0 or cells[k][1].startswith("%%hub") or defined & needed:
            kept.append(cells[k])
            needed = (needed - binds) | read  # what it binds on every path, earlier cells need not
    return kept[::-1]


WITH_HUB_CELLS = [p for p in sorted(NOTEBOOKS.glob("*.ipynb")) if hub_cells(p)]


class Kernel:
    """One IPython kernel with its own environment; `run(code)` returns (status, outputs)."""

    def __init__(self, env):
        from jupyter_client.manager import start_new_kernel

        self.manager, self.client = start_new_kernel(startup_timeout=120, kernel_name="python3",
                                                     env=env, cwd=str(NOTEBOOKS),
                                                     extra_arguments=["--IPKernelApp.log_level=ERROR"])

    def run(self, code, timeout=600):
        outputs = []

        def hook(msg):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                outputs.append((content["name"], content["text"]))
            elif kind in ("execute_result", "display_data"):
                outputs.append(("display", content["data"].get("text/plain", "")))
            elif kind == "error":
                outputs.append(("error", ANSI.sub("", "\n".join(content["traceback"]))))

        reply = self.client.execute_interactive(code, output_hook=hook, timeout=timeout,
                                                allow_stdin=False)
        return reply["content"]["status"], outputs

    def close(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def kernel_env(**overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(OMP_NUM_THREADS="1", PYDEVD_DISABLE_FILE_VALIDATION="1", MPLBACKEND="agg",
               PYTHONPATH=str(REPO_ROOT), **overrides)
    return env


@pytest.fixture(scope="session")
def standin_hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin-repos")
    built = hub_standins.build(root)
    hub = hub_standins.StandinHub(root)
    hub.built = built
    yield hub
    hub.close()


@pytest.fixture(scope="session")
def online_kernel(standin_hub, tmp_path_factory):
    home = tmp_path_factory.mktemp("hf-home-online")
    kernel = Kernel(kernel_env(HF_ENDPOINT=standin_hub.url, HF_HOME=str(home)))
    yield kernel
    kernel.close()


@pytest.fixture(scope="session")
def prefilled_home(standin_hub, tmp_path_factory):
    """A Hugging Face cache filled the way a classroom would: `python -m utils.hub download`."""
    home = tmp_path_factory.mktemp("hf-home-prefilled")
    done = subprocess.run([sys.executable, "-m", "utils.hub", "download"], cwd=REPO_ROOT,
                          env=kernel_env(HF_ENDPOINT=standin_hub.url, HF_HOME=str(home)),
                          capture_output=True, text=True, timeout=600)
    lines = done.stdout.splitlines()
    total = r"\d+ name\(s\), \d+ files, [\d.]+ [KMG]?B in all:"
    assert any(re.fullmatch(total, line) for line in lines), done.stdout  # the total size comes first
    missing = set(hub_standins.CHECKPOINTS) - set(standin_hub.built)
    failed = {line.split()[3] for line in lines if line.startswith("could not download")}
    assert failed == missing, done.stdout + done.stderr  # every stand-in was fetched
    status = subprocess.run([sys.executable, "-m", "utils.hub", "status"], cwd=REPO_ROOT,
                            env=kernel_env(HF_HUB_OFFLINE="1", HF_HOME=str(home)),
                            capture_output=True, text=True, timeout=300)
    said = {line.split()[0]: line.split()[-1] for line in status.stdout.splitlines()[1:-1]}
    assert said == {name: "missing" if name in missing else "cached" for name in hub_standins.CHECKPOINTS}
    return home


@pytest.fixture(scope="session")
def offline_kernel(prefilled_home, standin_hub):
    kernel = Kernel(kernel_env(HF_HUB_OFFLINE="1", HF_HOME=str(prefilled_home),
                               HF_ENDPOINT=standin_hub.url))
    yield kernel
    kernel.close()


def run_until_last_hub_cell(kernel, path, way, built):
    status, out = kernel.run(f"get_ipython().run_line_magic('reset', '-f')\n"
                             f"import os\nos.chdir({str(path.parent)!r})")
    assert status == "ok", out
    printed, unfetched, unserved = {}, [], []
    for index, source in hub_cells(path):
        status, outputs = kernel.run(source)
        text = "".join(t for name, t in outputs if name in ("stdout", "display", "error"))
        assert status == "ok", f"{path.name} cell {index} raised:\n{text[-3000:]}"
        if source.startswith("%%hub"):
            first = (text.strip().splitlines() or ["(no output)"])[0]
            names = source.splitlines()[0].split()[1:]
            if set(names) - set(built):  # no stand-in to serve: one line, said at the end
                assert text.startswith("Skipped") and text.count("\n") == 1, f"{path.name} cell {index}: {text}"
                unserved.append(f"cell {index} ({' '.join(names)})")
            elif way == "offline" and first.startswith("Skipped: could not load"):
                # the cell loads more than the prefetch fetches for it (see its files in CHECKPOINTS)
                unfetched.append(f"cell {index}: {first}")
            else:
                assert not text.startswith("Skipped"), f"{path.name} cell {index}: {text}"
            printed[index] = first
            SUMMARY.append((way, path.stem, index, source.splitlines()[0], first[:100]))
        elif index == hub_cells(path)[0][0] and way == "online":
            assert "Hugging Face Hub: reachable" in text, text
    if unserved:
        pytest.xfail(f"{path.name}: no stand-in for {'; '.join(unserved)}")
    if unfetched:  # said, not silent: the notebook or CHECKPOINTS must change
        pytest.xfail(f"{path.name} loads files that `python -m utils.hub download` does not fetch: "
                     + "; ".join(unfetched))
    return printed


def test_failures_print_one_line_and_the_rest_runs(online_kernel, standin_hub):
    """Runs first, on a fresh cache: cut, missing and gone each cost one line and a few seconds."""
    kernel, hub = online_kernel, standin_hub
    status, out = kernel.run(SETUP_CELL)
    assert status == "ok" and "Hugging Face Hub: reachable" in "".join(t for _, t in out)

    def stdout(code):
        start = time.perf_counter()
        status, outputs = kernel.run(code)
        assert status == "ok", outputs
        text = "".join(t for name, t in outputs if name in ("stdout", "display"))
        SUMMARY.append(("failure", f"{time.perf_counter() - start:.1f} s", 0, code.splitlines()[0], text[:100]))
        return text

    vit, tapas, clip = (hub_standins.CHECKPOINTS[k] for k in ("vit", "tapas", "clip"))
    hub.faults = {vit.repo_id: "cut", tapas.repo_id: "missing"}
    try:
        out = stdout('%%hub vit\nfrom transformers import pipeline\n'
                     'classifier = pipeline("image-classification", model=utils.CHECKPOINTS["vit"].repo_id,'
                     ' revision=utils.CHECKPOINTS["vit"].revision)\n')
        assert out.count("\n") == 1 and out.startswith("Skipped: could not load vit ("), out
        assert "connection" in out, out
        out = stdout('%%hub vit\nclassifier.model.config')
        assert out == "Skipped: this cell needs vit, which could not be loaded above.\n"
        out = stdout('%%hub tapas\nfrom transformers import pipeline\n'
                     'table_qa = pipeline("table-question-answering", model=utils.CHECKPOINTS["tapas"].repo_id,'
                     ' revision=utils.CHECKPOINTS["tapas"].revision)\n')
        assert out.count("\n") == 1 and out.startswith("Skipped: could not load tapas ("), out
        assert "not on the Hub" in out, out
        hub.gone = True  # the set-up cell found the Hub; now it answers nothing
        out = stdout('%%hub clip\nfrom transformers import CLIPModel\n'
                     'model = CLIPModel.from_pretrained(utils.CHECKPOINTS["clip"].repo_id, '
                     'revision=utils.CHECKPOINTS["clip"].revision)\n')
        assert out.count("\n") == 1 and out.startswith("Skipped: could not load clip ("), out
        out = stdout('%%hub clip\nmodel')
        assert out.startswith("Skipped: this cell needs clip"), out
        assert stdout('print("the rest of the notebook runs")') == "the rest of the notebook runs\n"
        status, outputs = kernel.run("%%hub gpt2\nvalue = 1\nvalue / 0  # a bug in the cell\n")
        assert status == "error"
        traceback = "".join(t for name, t in outputs if name == "error")
        assert "ZeroDivisionError" in traceback and "value / 0  # a bug in the cell" in traceback
    finally:
        hub.faults, hub.gone = {}, False
    assert "classifier" not in stdout("print(sorted(k for k in ('classifier', 'table_qa', 'model') if k in dir()))")


@pytest.mark.parametrize("path", WITH_HUB_CELLS, ids=lambda p: p.stem)
def test_hub_cells_run_online_against_the_standin_hub(online_kernel, standin_hub, path):
    printed = run_until_last_hub_cell(online_kernel, path, "online", standin_hub.built)
    assert printed


@pytest.mark.parametrize("path", WITH_HUB_CELLS, ids=lambda p: p.stem)
def test_hub_cells_run_offline_from_a_prefilled_cache(offline_kernel, standin_hub, path):
    before = len(standin_hub.requests)
    printed = run_until_last_hub_cell(offline_kernel, path, "offline", standin_hub.built)
    assert printed
    assert standin_hub.requests[before:] == []  # offline means no request at all


def test_every_hub_name_has_a_standin(standin_hub):
    assert set(standin_hub.built) == set(hub_standins.CHECKPOINTS)


def _summary_lines():
    return [f"{way:<8} {nb:<26} cell {i:>2} {line:<28} -> {first.strip()}" for way, nb, i, line, first in SUMMARY]


@pytest.fixture(scope="session", autouse=True)
def _print_summary():
    yield
    if SUMMARY:
        print("\n%%hub cells against the stand-ins:\n" + "\n".join(_summary_lines()))


def test_the_skipped_line_fetches_from_where_the_notebook_runs(standin_hub, tmp_path):
    """Offline, a `%%hub` cell names a call and a terminal command that fetch what it needs. Both
    work from notebooks/, where JupyterLab runs the notebook and opens its terminal: the command
    in a shell there (no PYTHONPATH, so `python -m utils.hub` alone would fail with "No module
    named 'utils'"), the call in the notebook; then the skipped cell runs."""
    env = kernel_env(HF_ENDPOINT=standin_hub.url, HF_HOME=str(tmp_path / "hf-home"))
    kernel = Kernel(env)
    cell = {name: f'%%hub {name}\nfrom transformers import AutoConfig\n'
                  f'config = AutoConfig.from_pretrained(utils.CHECKPOINTS["{name}"].repo_id)\n'
                  f'print("{name}", type(config).__name__)' for name in ("gpt2", "bigbird")}

    def run(code):
        status, outputs = kernel.run(code)
        text = "".join(t for name, t in outputs if name in ("stdout", "display", "error"))
        assert status == "ok", text
        return text

    try:
        standin_hub.gone = True  # the set-up cell finds no Hub
        assert "Hugging Face Hub: offline" in run(SETUP_CELL)
        skipped = {name: run(source) for name, source in cell.items()}
        standin_hub.gone = False  # the network is back
        for name, line in skipped.items():
            assert line.startswith("Skipped:") and line.count("\n") == 1, line
            assert f'utils.hub.download("{name}") in a cell here' in line, line
        command = re.search(r"`([^`]+)` in a terminal", skipped["gpt2"]).group(1)
        assert command.startswith("cd .. && ") and command.endswith(" -m utils.hub download gpt2"), command
        shell_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        shell_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        done = subprocess.run(command, shell=True, cwd=NOTEBOOKS, env=shell_env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0 and "done: gpt2" in done.stdout, done.stdout + done.stderr
        assert run(cell["gpt2"]) == "gpt2 GPT2Config\n"  # from the cache the command filled
        call = re.search(r"(utils\.hub\.download\([^)]*\)) in a cell here", skipped["bigbird"]).group(1)
        assert "done: bigbird" in run(call)
        assert run(cell["bigbird"]) == "bigbird BigBirdConfig\n"
    finally:
        standin_hub.gone = False
        kernel.close()
