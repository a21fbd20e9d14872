"""pytest set-up shared by the unit tests and nbval.

nbval compares every output of a notebook with the committed one. Two kinds of output vary from
run to run and carry no meaning for the course, so they are left out of the comparison on both
sides: stderr streams (warnings, progress bars written to stderr) and ipywidgets views (tqdm's
notebook progress bars). Everything else is compared, after tests/sanitize.cfg.
"""
import sys
from pathlib import Path

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


def pytest_sessionfinish(session, exitstatus):
    """After the notebooks ran, every shipped file must still match the manifest.

    A notebook that saves a figure into images/ must draw the same bytes every run; otherwise the
    next run's manifest test fails. Checked here so that one run catches it.
    """
    if not any(str(item.fspath).endswith(".ipynb") for item in getattr(session, "items", [])):
        return
    from utils.data import check_manifest

    problems = check_manifest()
    if problems:
        print("\nrunning the notebooks changed shipped files:\n  " + "\n  ".join(problems))
        session.exitstatus = 1
