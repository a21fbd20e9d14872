import time

import pytest

from utils import hub


def test_offline_env_answers_no_without_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_probe", lambda *a: pytest.fail("the network was touched"))
    assert hub.hub_available() is False


def test_unreachable_endpoint_answers_within_the_timeout(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://10.255.255.1:9")  # never answers: times out
    monkeypatch.setattr(hub, "_probe", lambda url, result: time.sleep(5))
    start = time.perf_counter()
    assert hub.hub_available(timeout=0.5, refresh=True) is False
    assert time.perf_counter() - start < 2


def test_checkpoints_match_the_pipeline_defaults():
    from transformers.pipelines import SUPPORTED_TASKS

    task_of = {"vit": "image-classification", "tapas": "table-question-answering",
               "wav2vec2": "automatic-speech-recognition", "clip": "zero-shot-image-classification"}
    for key, task in task_of.items():
        repo_id, revision = SUPPORTED_TASKS[task]["default"]["model"]
        assert hub.CHECKPOINTS[key].repo_id == repo_id
        assert hub.CHECKPOINTS[key].revision == revision
    assert hub.CHECKPOINTS["vit"].card_url == "https://huggingface.co/google/vit-base-patch16-224"


class FakeShell:
    def __init__(self):
        self.user_ns, self.shown, self.magics = {}, [], {}

    def displayhook(self, value):
        self.shown.append(value)

    def register_magic_function(self, fn, magic_kind, magic_name):
        self.magics[(magic_kind, magic_name)] = fn


def test_hub_magic_skips_offline_with_one_line(monkeypatch, capsys):
    shell = FakeShell()
    hub.register_hub_magic(shell)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shell.magics[("cell", "hub")]("", "x = 1\nx + 1")
    assert capsys.readouterr().out == hub.SKIP_MESSAGE + "\n"
    assert "x" not in shell.user_ns


def test_hub_magic_runs_the_cell_online(monkeypatch):
    shell = FakeShell()
    hub.register_hub_magic(shell)
    monkeypatch.setattr(hub, "hub_available", lambda: True)
    shell.magics[("cell", "hub")]("", "x = 20\nx + 22")
    assert shell.user_ns["x"] == 20 and shell.shown == [42]
    with pytest.raises(ZeroDivisionError):  # online, errors are not hidden
        shell.magics[("cell", "hub")]("", "1 / 0")
