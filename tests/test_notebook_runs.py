"""utils.notebooks run: checks in the notebook's namespace, quiet kernels, finished training bars."""
import nbformat

from utils import notebooks

TRAIN = """import sys, torch
sys.path.insert(0, {root!r})
import utils
model = torch.nn.Linear(2, 1)
data = [{{"x": torch.randn(2), "y": torch.randn(1)}} for _ in range(32)]
history = utils.train(model, data, batch_size=8, epochs=2,
                      loss_fn=lambda m, b: ((m(b["x"]) - b["y"]) ** 2).mean())
x = 2"""


def test_run_checks_the_namespace_quietly_and_saves_a_finished_training_line(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # execute() sets it; restored after the test
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    monkeypatch.delenv("PYDEVD_DISABLE_FILE_VALIDATION")
    path, small = tmp_path / "train.ipynb", tmp_path / "small.ipynb"
    for where, source in [(path, TRAIN.format(root=str(notebooks.REPO_ROOT))), (small, "x = 2")]:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source)]
        nbformat.write(nb, where)
    status, _ = notebooks.execute(path, inplace=True, checks=[("x is two", "x == 2")])
    assert status == "ok"
    status, _ = notebooks.execute(small, checks=[("x is two", "x == 2"), ("x is three", "x == 3")])
    assert status == "FAILED check: x is three (False)"
    status, _ = notebooks.execute(small, checks=[("y exists", "y == 1")])
    assert status.startswith("FAILED check: y exists (NameError"), status
    # the saved output is one finished line, not the widget's frozen "0%" text
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    texts = [o["data"]["text/plain"] for o in outputs if "data" in o]
    assert texts == ["training: 8/8 steps done"], outputs
    assert not any("widget-view" in k for o in outputs for k in o.get("data", {}))
    err = capfd.readouterr().err
    assert "WARNING" not in err and "Debugger warning" not in err, err


def test_check_needs_online(capsys):
    import pytest

    with pytest.raises(SystemExit):
        notebooks.main(["run", "--check"])
    assert "--check needs --online" in capsys.readouterr().err
