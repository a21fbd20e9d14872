"""Every shipped speech record names the command that made it, and today's script accepts that command.

The commands are parsed by each script's own argument parser, not run: `argparse` is stopped right after
it has read the arguments, so a renamed or removed option fails here while nothing is trained.
"""
import argparse
import importlib.util
import json
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted(p for p in (ROOT / "data" / "speech").rglob("*.json") if "command" in json.loads(p.read_text()))


class _Parsed(Exception):
    pass


def _parse(command, monkeypatch, script=None):
    """Run `command`'s script only as far as its argument parser, and return what it parsed.

    `script` is the file to load (by default the command's own script in today's tree; a copy of an
    older version to check a command against the script of its commit)."""
    words = shlex.split(command)
    assert words[0] == "python" and words[1].startswith("scripts/"), command
    script = Path(script) if script is not None else ROOT / words[1]
    spec = importlib.util.spec_from_file_location(f"parsed_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original = argparse.ArgumentParser.parse_args

    def stop(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    with pytest.raises(_Parsed) as parsed:
        module.main(words[2:])
    return parsed.value.args[0]


def test_records_are_found():
    names = {p.relative_to(ROOT / "data" / "speech").as_posix() for p in RECORDS}
    assert {"open_model/metrics.json", "open_model/init_metrics.json", "open_model/lm_metrics.json",
            "pretraining/pretraining.json", "pretraining/tenth_pretrained.json",
            "pretraining/tenth_scratch.json", "open_model/voice_swap.json",
            "pretraining/tenth_pretrained_seed1.json", "pretraining/tenth_scratch_seed2.json",
            "fresh_test/scores.json"} <= names


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_each_record_command_parses_with_todays_script(record, monkeypatch):
    command = json.loads(record.read_text())["command"]
    args = _parse(command, monkeypatch)
    assert isinstance(args, argparse.Namespace)


def test_a_removed_option_is_caught(monkeypatch):
    """The check can fail: the grammar model's old option is refused by today's script."""
    with pytest.raises(SystemExit):
        _parse("python scripts/train_speech.py --epochs 150 --eval-epochs 10", monkeypatch)


def _parse_at_commit(command, commit, tmp_path, monkeypatch):
    """Parse `command` with the script as it was at `commit` (read with git show), not today's."""
    import subprocess
    script = shlex.split(command)[1]
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{script}"], check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"commit {commit} is not in this clone's history")
    old = tmp_path / Path(script).name
    old.write_text(source)
    return _parse(command, monkeypatch, script=old)


TRAINED_BY = [p for p in RECORDS if "trained_by" in json.loads(p.read_text())]


def test_the_grammar_model_records_how_its_weights_were_trained():
    assert [p.relative_to(ROOT / "data" / "speech").as_posix() for p in TRAINED_BY] == ["model/metrics.json"]


@pytest.mark.parametrize("record", TRAINED_BY, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_older_training_commands_parse_with_the_script_of_their_commit(record, tmp_path, monkeypatch):
    trained_by = json.loads(record.read_text())["trained_by"]
    assert trained_by["commands"], record
    for command in trained_by["commands"]:
        args = _parse_at_commit(command, trained_by["script_commit"], tmp_path, monkeypatch)
        assert args.out is not None
    with pytest.raises(SystemExit):  # and today's script refuses them, which is why the commit is stored
        _parse(trained_by["commands"][0], monkeypatch)
