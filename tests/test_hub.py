import os
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
               "wav2vec2": "automatic-speech-recognition", "clip": "zero-shot-image-classification",
               "docqa": "document-question-answering"}
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


@pytest.fixture
def run_cell(monkeypatch):
    """A `%%hub` magic in a fake shell; returns run(line, cell) and the shell."""
    shell = FakeShell()
    hub.register_hub_magic(shell)
    return lambda line, cell: shell.magics[("cell", "hub")](line, cell), shell


def online(monkeypatch):
    monkeypatch.setattr(hub, "hub_available", lambda: True)


def http_error(cls, code, url="https://huggingface.co/google/vit-base-patch16-224/resolve/3f49326/config.json"):
    import httpx2

    response = httpx2.Response(code, request=httpx2.Request("GET", url))
    return cls(f"{code} Client Error for url: {url}", response=response)


def test_hub_magic_skips_offline_with_one_line(monkeypatch, capsys, run_cell):
    run, shell = run_cell
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run("", "x = 1\nx + 1")
    assert capsys.readouterr().out == hub.SKIP_MESSAGE + "\n"
    monkeypatch.setattr(hub, "is_cached", lambda name: name == "clip")
    run("vit clip", "x = 1")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("Skipped:") and "vit" in out and "clip" not in out
    assert "python -m utils.hub download vit" in out
    assert "x" not in shell.user_ns


def test_hub_magic_runs_offline_from_the_cache(monkeypatch, run_cell):
    from huggingface_hub import constants

    run, shell = run_cell
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_available", lambda: False)  # no answer within 2 s
    monkeypatch.setattr(hub, "is_cached", lambda name: True)
    before = constants.HF_HUB_OFFLINE
    run("vit", "import os\nfrom huggingface_hub import constants\n"
               "seen = (os.environ['HF_HUB_OFFLINE'], constants.HF_HUB_OFFLINE)")
    assert shell.user_ns["seen"] == ("1", True)  # the libraries read only the cache in the cell
    assert constants.HF_HUB_OFFLINE == before and "HF_HUB_OFFLINE" not in os.environ


def test_hub_magic_runs_the_cell_online(monkeypatch, run_cell):
    run, shell = run_cell
    online(monkeypatch)
    run("", "x = 20\nx + 22")
    assert shell.user_ns["x"] == 20 and shell.shown == [42]


def test_unknown_names_are_named(run_cell):
    run, _ = run_cell
    with pytest.raises(ValueError, match="'vitt'.*keys of utils.CHECKPOINTS"):
        run("vitt", "pass")


@pytest.mark.parametrize("make_error, cause", [
    (lambda: http_error(hub_errors().HfHubHTTPError, 429), "HTTP 429"),
    (lambda: http_error(hub_errors().HfHubHTTPError, 401), "HTTP 401"),
    (lambda: http_error(hub_errors().RepositoryNotFoundError, 404), "repository is not on the Hub"),
    (lambda: http_error(hub_errors().RevisionNotFoundError, 404), "pinned revision"),
    (lambda: OSError(28, "No space left on device"), "disk is full"),
    (lambda: __import__("httpx2").RemoteProtocolError("peer closed connection without sending "
                                                    "complete message body"), "connection failed"),
    (lambda: hub_errors().LocalEntryNotFoundError("cannot find the requested files"), "local cache"),
])
def test_a_failed_download_is_one_line_and_later_cells_skip(monkeypatch, capsys, run_cell, make_error, cause):
    run, shell = run_cell
    online(monkeypatch)
    shell.user_ns["make_error"] = make_error

    # as transformers does: its own OSError raised from the Hub's error
    run("vit", "try:\n    raise make_error()\nexcept Exception as e:\n"
               "    raise OSError('Can\\'t load google/vit-base-patch16-224') from e")
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    assert out.startswith("Skipped: could not load vit (google/vit-base-patch16-224 at 3f49326)")
    assert cause in out and "To fix:" in out
    run("vit", "ran = True")
    assert capsys.readouterr().out == "Skipped: this cell needs vit, which could not be loaded above.\n"
    assert "ran" not in shell.user_ns
    run("clip", "other = True")  # a name that did not fail still runs
    assert shell.user_ns["other"] is True


def hub_errors():
    from huggingface_hub import errors

    return errors


def test_only_the_name_the_error_is_about_fails(monkeypatch, capsys, run_cell):
    run, shell = run_cell
    online(monkeypatch)
    shell.user_ns["error"] = http_error(hub_errors().HfHubHTTPError, 429,
                                        "https://huggingface.co/api/datasets/hf-internal-testing/"
                                        "librispeech_asr_dummy/revision/main")
    run("wav2vec2 librispeech_dummy", "raise error")
    assert "librispeech_dummy (hf-internal-testing" in capsys.readouterr().out
    run("wav2vec2", "ran = True")
    assert shell.user_ns["ran"] is True
    hub.register_hub_magic(shell)  # the set-up cell again: a fresh start
    run("librispeech_dummy", "again = True")
    assert shell.user_ns["again"] is True


def test_a_bug_in_the_cell_raises_with_its_own_lines(monkeypatch, run_cell):
    import traceback

    run, _ = run_cell
    online(monkeypatch)
    with pytest.raises(ZeroDivisionError) as info:  # online, errors are not hidden
        run("vit", "a = 1\nb = a / 0  # the buggy line")
    text = "".join(traceback.format_exception(info.value))
    assert "b = a / 0  # the buggy line" in text
    with pytest.raises(NameError):
        run("vit", "undefined_name")


def test_bounded_waits_are_set(run_cell):
    from huggingface_hub import constants

    assert constants.HF_HUB_ETAG_TIMEOUT <= 5 and constants.HF_HUB_DOWNLOAD_TIMEOUT <= 10


def test_the_registry_names_datasets_and_files():
    assert hub.CHECKPOINTS["librispeech_dummy"].repo_type == "dataset"
    assert hub.CHECKPOINTS["librispeech_dummy"].card_url.startswith("https://huggingface.co/datasets/")
    assert list(hub.CHECKPOINTS)[-1] == "llava"
    assert set(hub.EXPECTATIONS) <= {p.stem for p in (hub.Path(__file__).parent.parent / "notebooks").glob("*.ipynb")}


def test_a_pipeline_that_could_not_load_is_read_through_its_text(monkeypatch, capsys, run_cell):
    """transformers' pipeline turns every load error into one ValueError holding the tracebacks."""
    run, shell = run_cell
    online(monkeypatch)
    shell.user_ns["error"] = ValueError(
        "Could not load model google/vit-base-patch16-224 with any of the following classes: (...). "
        "See the original errors:\n\nwhile loading with AutoModelForImageClassification, an error is thrown:\n"
        "Traceback (most recent call last):\n  ...\nhttpx2.RemoteProtocolError: peer closed connection "
        "without sending complete message body (received 164340 bytes, expected 328680)\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "OSError: Can't load the model for 'google/vit-base-patch16-224'. ... a file named pytorch_model.bin.\n")
    run("vit", "raise error")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "connection failed (RemoteProtocolError" in out
    assert "pytorch_model.bin" not in out
    assert hub.hub_failure(ValueError("Could not load model x: a plain ValueError")) is None


def test_a_file_missing_from_the_cache_is_one_line(monkeypatch, capsys, run_cell):
    run, shell = run_cell
    monkeypatch.setattr(hub, "hub_available", lambda: False)
    monkeypatch.setattr(hub, "is_cached", lambda name: True)
    run("gpt2", "raise OSError('openai-community/gpt2 does not appear to have a file named "
                "pytorch_model.bin or model.safetensors.')")
    out = capsys.readouterr().out
    assert out.startswith("Skipped: could not load gpt2 (openai-community/gpt2 at main): a file is missing")
    assert out.count("\n") == 1


def test_the_online_expectations_name_what_the_notebooks_define():
    """`utils.notebooks run --online --check` evaluates these in the notebooks: their names must exist."""
    import ast
    import builtins
    import re

    import nbformat

    for stem, checks in hub.EXPECTATIONS.items():
        path = hub.Path(__file__).parent.parent / "notebooks" / f"{stem}.ipynb"
        source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        for what, expression in checks:
            tree = ast.parse(expression, mode="eval")
            bound = {a.arg for node in ast.walk(tree) if isinstance(node, ast.Lambda) for a in node.args.args}
            bound |= {n.id for node in ast.walk(tree) if isinstance(node, ast.comprehension)
                      for n in ast.walk(node.target) if isinstance(n, ast.Name)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Name) and node.id not in bound and not hasattr(builtins, node.id):
                    assert re.search(rf"\b{node.id}\b", source), f"{stem}: {what!r} uses {node.id}, which it lacks"


def hub_cell_bodies():
    """(notebook stem, cell index, names, body) for every `%%hub` cell of the course."""
    import nbformat

    found = []
    for path in sorted((hub._ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "code" and cell.source.startswith("%%hub"):
                line, _, body = cell.source.partition("\n")
                found.append((path.stem, i, line.split()[1:], body))
    return found


def test_each_expectation_belongs_to_exactly_one_hub_cell_of_its_notebook():
    cells = hub_cell_bodies()
    for stem, checks in hub.EXPECTATIONS.items():
        for what, _ in checks:
            owners = [(s, i) for s, i, _, body in cells if hub.expectation_for(body) == what]
            assert len(owners) == 1 and owners[0][0] == stem, (what, owners)


def test_offline_the_skipped_line_says_what_the_cell_shows_online(monkeypatch, capsys, run_cell):
    run, _ = run_cell
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "is_cached", lambda name: False)
    stem, index, names, body = next(c for c in hub_cell_bodies() if c[0] == "06_speech_wav2vec2"
                                    and hub.expectation_for(c[3]))
    run(" ".join(names), body)
    out = capsys.readouterr().out
    what = hub.EXPECTATIONS[stem][0][0]
    assert out.count("\n") == 1 and f"Online, this cell is meant to show that {what}; this offline run does not show it." in out, out
    assert 'utils.hub.download("wav2vec2", "librispeech_dummy") in a cell here' in out, out
    run("vit", "config = classifier.model.config")  # no entry: no sentence about what it shows
    out = capsys.readouterr().out
    assert "Online" not in out and 'utils.hub.download("vit")' in out, out


def test_the_terminal_command_works_from_the_folder_the_notebook_runs_in(monkeypatch):
    root = hub._ROOT
    monkeypatch.setattr(hub.sys, "executable", str(root / ".venv" / "bin" / "python"))
    venv_python = str(hub.Path(".venv", "bin", "python"))
    assert hub.terminal_command("download", "vit", cwd=root) == f"{venv_python} -m utils.hub download vit"
    assert (hub.terminal_command("download", "vit", cwd=root / "notebooks")
            == f"cd .. && {venv_python} -m utils.hub download vit")
    monkeypatch.setattr(hub.sys, "executable", "/usr/bin/python3")  # outside the course: by name
    assert hub.terminal_command("status", cwd=root / "notebooks") == "cd .. && python -m utils.hub status"


def test_download_takes_names_as_a_notebook_writes_them(monkeypatch):
    said = []
    monkeypatch.setattr(hub, "hub_available", lambda refresh=False: False)
    assert hub.download("vit", out=said.append) is False  # offline: one line, nothing fetched
    assert said == ["The Hugging Face Hub cannot be reached (or HF_HUB_OFFLINE=1 is set): nothing downloaded."]
    for names in [("vit",), ("vit", "clip"), (["vit", "clip"],)]:
        hub.download(*names, out=lambda line: None)
    with pytest.raises(KeyError, match="'vitt'"):
        hub.download("vitt")
    assert hub.download.__module__ == "utils.hub"
    import utils

    assert utils.hub.download is hub.download  # what the skipped line tells a notebook to call


def test_the_failed_cell_itself_tries_again(monkeypatch, capsys, run_cell):
    """"Run the cell again" works: the cell that failed retries; the cells after it skip until then."""
    run, shell = run_cell
    online(monkeypatch)
    shell.user_ns.update(fail=True, error=http_error(hub_errors().HfHubHTTPError, 429))
    loader = "if fail:\n    raise error\nloaded = True"
    run("vit", loader)
    assert "HTTP 429" in capsys.readouterr().out
    run("vit", "after = True")
    assert "after" not in shell.user_ns
    shell.user_ns["fail"] = False  # the Hub answers again
    run("vit", loader)
    run("vit", "after = True")
    assert shell.user_ns["loaded"] is True and shell.user_ns["after"] is True


def test_a_checkpoint_missing_offline_names_the_call_that_fetches_it(monkeypatch, capsys, run_cell):
    run, shell = run_cell
    online(monkeypatch)
    shell.user_ns["error"] = hub_errors().LocalEntryNotFoundError("cannot find the requested files")
    run("clip", "raise error")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and 'To fix: where there is network, run utils.hub.download("clip") in a cell here' in out, out
