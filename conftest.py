"""pytest set-up shared by the unit tests and nbval.

nbval compares every output of a notebook with the committed one. Two kinds of output vary from
run to run and carry no meaning for the course, so they are left out of the comparison on both
sides: stderr streams (warnings, progress bars written to stderr) and ipywidgets views (tqdm's
notebook progress bars). Everything else is compared, after tests/sanitize.cfg.

The tests run on two workers (pytest.ini), so two processes share the CPU with torch's OpenMP
threads. OpenMP threads that wait by spinning then take the cores from each other: a small training
loop on two threads took 10-11 s on a loaded two-core machine, against 2.6-3.8 s with threads that
sleep while they wait, and gave the same weights to the last digit. The kernels nbval and the `%%hub`
tests start inherit this setting from here.
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read by libgomp when torch is first imported

import nbval.plugin

sys.path.insert(0, str(Path(__file__).resolve().parent))

_original = nbval.plugin.transform_streams_for_comparison
WIDGET = "application/vnd.jupyter.widget-view+json"


def _volatile(output):
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        return True
    return WIDGET in output.get("data", {})


def _comparable(outputs):
    return _original([o for o in outputs if not _volatile(o)])


nbval.plugin.transform_streams_for_comparison = _comparable


def _runs_notebooks_on_workers(config):
    """Whether pytest-xdist runs the tests (its controller collects none itself) and a path asked
    for holds a notebook: notebooks/, a notebook, or a folder above notebooks/."""
    if not config.pluginmanager.hasplugin("dsession"):
        return False
    notebooks = Path(__file__).resolve().parent / "notebooks"
    paths = [Path(config.invocation_params.dir, arg.split("::")[0]).resolve() for arg in config.args]
    return any(path == notebooks or notebooks in path.parents or path in notebooks.parents for path in paths)


def pytest_sessionfinish(session, exitstatus):
    """After the notebooks ran, every shipped file must still match the manifest.

    A notebook that saves a figure into images/ must draw the same bytes every run; otherwise the
    next run's manifest test fails. Checked here so that one run catches it.
    """
    if hasattr(session.config, "workerinput"):
        return  # a pytest-xdist worker: the controller checks once, after every worker finished
    if not (any(str(item.fspath).endswith(".ipynb") for item in getattr(session, "items", []))
            or _runs_notebooks_on_workers(session.config)):
        return
    from utils.data import check_manifest

    problems = check_manifest()
    if problems:
        print("\nrunning the notebooks changed shipped files:\n  " + "\n  ".join(problems))
        session.exitstatus = 1
