"""Hugging Face Hub access: the one check, the named checkpoints, and the `%%hub` cell magic.

A pretrained cell starts with `%%hub NAME [NAME ...]`, the keys of CHECKPOINTS that it needs.
- Online it runs as usual.
- Offline (HF_HUB_OFFLINE=1, or no answer from the Hub within two seconds) it runs only if every
  NAME is in the local Hugging Face cache at its pinned revision (`utils.hub.download("NAME")` in a
  notebook, or `python -m utils.hub download NAME` in the course's folder, puts it there); otherwise it
  prints one line: what the cell is meant to show online (from EXPECTATIONS, where it has an entry) and the exact
  call and command that fetch what is missing, for the folder the notebook runs in.
- If loading a NAME fails (a cut download, 401/429, a revision gone, a full disk...) the cell prints
  one line naming it, the cause and what to do, and later cells that name it say they were skipped
  (running the failed cell again tries again). A bug in the cell's own code still raises, with the
  cell's lines in the traceback.

python -m utils.hub download [NAME ...]   fetch what the notebooks use (all NAMEs by default)
python -m utils.hub status                say what is in the local cache
(run from the course's folder, the one that holds utils/; in a notebook: utils.hub.download("NAME"))
"""
import argparse
import ast
import contextlib
import errno
import linecache
import logging
import os
import re
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Checkpoint", "CHECKPOINTS", "EXPECTATIONS", "hub_available", "register_hub_magic",
           "is_cached", "download", "status", "SKIP_MESSAGE", "expectation_for", "fetch_advice"]

SKIP_MESSAGE = "Skipped: this cell needs the Hugging Face Hub, which cannot be reached (offline)."

# Bounded waits: a metadata request that gets no answer gives up after a few seconds and a stalled
# download after ten (huggingface_hub reads these when it is imported; setup() also sets them).
HUB_TIMEOUTS = {"HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "10"}
for _name, _value in HUB_TIMEOUTS.items():
    os.environ.setdefault(_name, _value)


@dataclass(frozen=True)
class Checkpoint:
    repo_id: str
    revision: str | None = None  # the commit a transformers pipeline pins, where one does
    repo_type: str = "model"  # or "dataset"
    config: str | None = None  # a data set's configuration and split, as load_dataset takes them
    split: str | None = None
    files: tuple[str, ...] | None = None  # None: what from_pretrained loads (configs, vocabularies, weights)

    @property
    def card_url(self):
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        return f"https://huggingface.co/{prefix}{self.repo_id}"

    @property
    def pinned(self):
        return self.revision or "main"

    def describe(self):
        return f"{self.repo_id} at {self.pinned}"


# The pretrained checkpoints and data sets the course downloads, in one place. Revisions are the
# ones the pipeline defaults pin in transformers 5.23 (tests/test_hub.py checks they still agree);
# no pipeline pins GPT-2 (notebook 01 reads its size from its config), the two long-document
# models whose configs notebook 02 reads, Mamba (notebook 03 counts its cache), Donut or LLaVA, read at main
# (no commit of theirs could be checked against a public source that pins it).
# DINOv2 (notebook 04 probes its features), Whisper-tiny (notebook 06 scores it), SigLIP 2 (notebook 07) and
# Qwen2.5-Coder-0.5B-Instruct (notebook 05 has it write pandas) are pinned to the full commit hashes of
# facebook/dinov2-small (150c8e7...), openai/whisper-tiny (169d4a4...), google/siglip2-base-patch16-224 (75de2d5...)
# and Qwen/Qwen2.5-Coder-0.5B-Instruct (ea3f247...) that other public projects pin, so that their outputs cannot
# change under the notebooks.
# Notebook 05's SQA and TabFact checkpoints (google/tapas-base-finetuned-sqa, -tabfact) and TAPAS's smallest
# pre-trained encoder (google/tapas-tiny, masked-LM and intermediate pre-training, no fine-tuning) are read at main:
# no public source that pins a commit of theirs was found. TAPEX (microsoft/tapex-base-finetuned-wtq) is pinned to
# 88a9933, the commit the Hub's own file listing of its main branch shows ("Adding `safetensors` variant of this
# model (#1)", the one that adds model.safetensors); no other project was found pinning it.
CHECKPOINTS = {
    "vit": Checkpoint("google/vit-base-patch16-224", "3f49326"),
    "tapas": Checkpoint("google/tapas-base-finetuned-wtq", "e3dde19"),
    "tapas_sqa": Checkpoint("google/tapas-base-finetuned-sqa"),
    "tapas_tabfact": Checkpoint("google/tapas-base-finetuned-tabfact"),
    "tapas_tiny": Checkpoint("google/tapas-tiny"),
    "tapex": Checkpoint("microsoft/tapex-base-finetuned-wtq", "88a9933"),
    "wav2vec2": Checkpoint("facebook/wav2vec2-base-960h", "22aad52"),
    "clip": Checkpoint("openai/clip-vit-base-patch32", "3d74acf"),
    "gpt2": Checkpoint("openai-community/gpt2", files=("config.json",)),
    "longformer": Checkpoint("allenai/longformer-base-4096", files=("config.json",)),
    "bigbird": Checkpoint("google/bigbird-roberta-base", files=("config.json",)),
    "whisper": Checkpoint("openai/whisper-tiny", "169d4a4341b33bc18d8881c4b69c2e104e1cc0af"),
    "librispeech_dummy": Checkpoint("hf-internal-testing/librispeech_asr_dummy", repo_type="dataset",
                                    config="clean", split="validation"),
    "dinov2": Checkpoint("facebook/dinov2-small", "150c8e7bb7cef2d30ec31b13a517af14840ee3f7"),
    "coder": Checkpoint("Qwen/Qwen2.5-Coder-0.5B-Instruct", "ea3f2471cf1b1f0db85067f1ef93848e38e88c25"),
    "docqa": Checkpoint("impira/layoutlm-document-qa", "beed3c4"),
    "donut": Checkpoint("naver-clova-ix/donut-base-finetuned-docvqa"),
    "mamba": Checkpoint("state-spaces/mamba-130m-hf"),
    "siglip": Checkpoint("google/siglip2-base-patch16-224", "75de2d55ec2d0b4efc50b3e9ad70dba96a7b2fa2"),
    "llava": Checkpoint("llava-hf/llava-interleave-qwen-0.5b-hf"),
}

# What the real checkpoints must give, checked by `python -m utils.notebooks run --online --check`
# in the notebook's namespace after it ran: notebook -> [(what, Python expression that is True)].
# ImageNet-1k's five cat classes are 281-285 (tabby, tiger cat, Persian, Siamese, Egyptian).
EXPECTATIONS = {
    "04_vision_transformer": [
        ("ViT's top label for the cat photograph is a cat class",
         "int(classifier.model.config.label2id[classifier(photo, top_k=1)[0]['label']]) in range(281, 286)"),
    ],
    "05_tables_tapas": [
        ("each of TAPAS's answers to the book's four questions is executed and checked against its pandas gold value",
         "all(tapas.ask(table_qa, table, q, gold)['correct'] for q, _, gold in book_questions)"),
    ],
    "06_speech_wav2vec2": [
        ("wav2vec2-base-960h transcribes the LibriSpeech sample with word error rate 0",
         "jiwer.wer(utterance['text'], heard) == 0"),
    ],
    "07_vision_text_clip": [
        ("CLIP ranks the cat caption first for the cat photograph",
         "int(probabilities.argmax()) == captions.index('a photo of a cat')"),
    ],
}

# Files from_pretrained reads when a checkpoint does not list its own: configs, vocabularies and
# processors, and the PyTorch weights (safetensors where the repository has them).
_SMALL_FILES = (".json", ".txt", ".model", ".jinja")
_SKIP_FILES = ("README.md", ".gitattributes")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
            "pytorch_model.bin.index.json")

_TRUE = {"1", "on", "yes", "true"}
_cache = {}
_failed = {}  # NAME -> the source of the cell that failed to load it (the cells after it skip)
_ROOT = Path(__file__).resolve().parent.parent  # the course's folder, the one that holds utils/


def _offline_by_env():
    return any(os.environ.get(v, "").strip().lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _probe(url, result):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=2):
            result.append(True)
    except urllib.error.HTTPError:  # the server answered: it is reachable
        result.append(True)
    except Exception:  # DNS failure, refused, timed out, proxy...
        result.append(False)


def hub_available(timeout=2.0, refresh=False):
    """True if the Hub answers within `timeout` seconds; False at once when HF_HUB_OFFLINE=1."""
    if _offline_by_env():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    if refresh or endpoint not in _cache:
        result = []
        # A thread bounds the whole check, DNS look-up included (urllib's timeout does not).
        worker = threading.Thread(target=_probe, args=(f"{endpoint}/api/models?limit=1", result),
                                  daemon=True)
        worker.start()
        worker.join(timeout)
        _cache[endpoint] = bool(result and result[0])
    return _cache[endpoint]


def set_hub_timeouts():
    """Apply HUB_TIMEOUTS to huggingface_hub even if it was imported before utils."""
    from huggingface_hub import constants

    for name, value in HUB_TIMEOUTS.items():
        setattr(constants, name, int(os.environ.get(name) or value))


# ---------------------------------------------------------------- the local cache

def _get(name):
    if name not in CHECKPOINTS:
        raise KeyError(f"unknown name {name!r}: the names are the keys of utils.CHECKPOINTS "
                       f"({', '.join(CHECKPOINTS)})")
    return CHECKPOINTS[name]


def _cached_file(checkpoint, filename):
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(checkpoint.repo_id, filename, revision=checkpoint.pinned,
                                  repo_type=checkpoint.repo_type)
    return path if isinstance(path, str) else None


def _dataset_cache_dirs(checkpoint):
    """Where datasets keeps the prepared Arrow tables of `checkpoint` (its config), if anywhere."""
    import datasets

    root = Path(datasets.config.HF_DATASETS_CACHE) / checkpoint.repo_id.replace("/", "___")
    root = root / (checkpoint.config or "default")
    return [p.parent for p in root.glob("*/*/dataset_info.json")] if root.is_dir() else []


def is_cached(name):
    """True if NAME can be loaded offline: its files at the pinned revision are in the local cache.

    A model needs its config and its weights (or the files it lists); a data set needs the Arrow
    tables that datasets prepared when it was loaded online (datasets reads those offline).
    """
    checkpoint = _get(name)
    if checkpoint.repo_type == "dataset":
        return bool(_dataset_cache_dirs(checkpoint))
    if checkpoint.files is not None:
        return all(_cached_file(checkpoint, f) for f in checkpoint.files)
    return bool(_cached_file(checkpoint, "config.json")
                and any(_cached_file(checkpoint, f) for f in _WEIGHTS))


@contextlib.contextmanager
def _libraries_offline():
    """Make huggingface_hub, transformers and datasets read only the local cache, for one cell."""
    from huggingface_hub import constants

    saved = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    ds_config = sys.modules.get("datasets.config")
    ds_saved = getattr(ds_config, "HF_HUB_OFFLINE", None)
    if ds_config is not None:
        ds_config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved[0]
        constants.HF_HUB_OFFLINE = saved[1]
        if ds_config is not None:
            ds_config.HF_HUB_OFFLINE = ds_saved


# ---------------------------------------------------------------- telling a failed download from a bug

def _chain(err):
    seen = []
    while err is not None and err not in seen:
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def _status_code(err):
    response = getattr(err, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


_NETWORK = {"ConnectError", "ConnectTimeout", "ReadTimeout", "ReadError", "WriteError", "TimeoutException",
            "NetworkError", "RemoteProtocolError", "ProtocolError", "ConnectionError", "ConnectionResetError",
            "ConnectionRefusedError", "TimeoutError", "ChunkedEncodingError", "ProxyError", "SSLError"}
# A line of a formatted traceback that names an exception: "httpx2.RemoteProtocolError: peer closed..."
_MISSING_FILE = "does not appear to have a file named"  # transformers, offline or online
_ERROR_LINE = re.compile(r"^(?:[\w]+\.)*(\w+(?:Error|Exception|Enabled)): ?(.*)$", re.M)


def _facts(err):
    """(class name, message, HTTP status, errno) for every error in `err`'s chain, root cause last.

    A transformers pipeline that cannot load a model raises one ValueError holding the formatted
    tracebacks of its attempts; the errors named in that text count too (root cause first there).
    """
    facts = []
    for e in _chain(err):
        message = str(e).strip()
        facts.append((type(e).__name__, message, _status_code(e), getattr(e, "errno", None),
                      type(e).__mro__))
        if isinstance(e, ValueError) and message.startswith("Could not load model"):
            for name, text in _ERROR_LINE.findall(message):
                code = re.search(r"\b([45]\d\d) (?:Client|Server) Error", text)
                number = re.match(r"\[Errno (\d+)\]", text)
                facts.append((name, text, int(code.group(1)) if code else None,
                              int(number.group(1)) if number else None, ()))
    return facts


def hub_failure(err):
    """If `err` is a failure to reach or load something from the Hub, (cause, what to do).

    Returns None for anything else (a bug in the cell's code), which the magic re-raises.
    """
    for name, message, code, number, mro in _facts(err):
        names = {name} | {c.__name__ for c in mro}
        first = (message.splitlines() or [name])[0][:140]
        if number in (errno.ENOSPC, errno.EDQUOT):
            return "the disk is full", "free some space (or set HF_HOME to a larger disk) and run the cell again"
        if code in (401, 403) or "GatedRepoError" in names:
            return (f"HTTP {code or 401}, access denied",
                    "log in with `hf auth login` (or set HF_TOKEN) if the model needs it, then run the cell again")
        if code == 429:
            return "HTTP 429, too many requests", "wait a few minutes and run the cell again"
        if "RevisionNotFoundError" in names:
            return "the pinned revision is not on the Hub", "update its revision in utils/hub.py (CHECKPOINTS)"
        if "RepositoryNotFoundError" in names or "DatasetNotFoundError" in names:
            return "the repository is not on the Hub (HTTP 404)", "check its name in utils/hub.py (CHECKPOINTS)"
        if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"}:
            return ("it is not in the local cache and the Hub cannot be reached",
                    "where there is network, {fetch}")
        if "EntryNotFoundError" in names or _MISSING_FILE in message:
            return (f"a file is missing ({first})",
                    "online, check the revision in utils/hub.py (CHECKPOINTS); offline, the cell needs a "
                    "file that utils.hub.download does not fetch (its files in CHECKPOINTS)")
        if names & _NETWORK:
            return (f"the connection failed ({name}: {first})",
                    "check the network (or proxy) and run the cell again")
        if names & {"HfHubHTTPError", "RevisionResolutionError"}:
            return f"{name}: {first}", "run the cell again; if it persists, check the network"
    return None


def _culprits(names, err):
    """The NAMEs the error is about (their repository appears in it), else all of them."""
    text = " ".join(str(e) for e in _chain(err))
    named = [n for n in names if CHECKPOINTS[n].repo_id in text]
    return named or list(names)


# ---------------------------------------------------------------- what a skipped cell says

def expression_names(expression):
    """The variables a check in EXPECTATIONS reads (builtins and names it binds itself left out)."""
    import builtins

    tree = ast.parse(expression, mode="eval")
    bound = {a.arg for node in ast.walk(tree) if isinstance(node, ast.Lambda) for a in node.args.args}
    bound |= {n.id for node in ast.walk(tree) if isinstance(node, ast.comprehension)
              for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)
            and node.id not in bound and not hasattr(builtins, node.id)}


def expectation_for(cell):
    """What the real checkpoints show in this `%%hub` cell, from EXPECTATIONS, or None.

    An entry belongs to the cell whose code names every variable its check reads (tests/test_hub.py
    checks that each entry belongs to exactly one cell, in its own notebook).
    """
    for checks in EXPECTATIONS.values():
        for what, expression in checks:
            if all(re.search(rf"\b{re.escape(n)}\b", cell) for n in expression_names(expression)):
                return what
    return None


def _shell_word(text):
    return f'"{text}"' if re.search(r"[^\w./\\:-]", text) else text


def terminal_command(*args, cwd=None):
    """`python -m utils.hub ARGS` as a shell command that works from `cwd` (the current folder).

    It changes to the course's folder first when `cwd` is elsewhere, and names this Python by its
    path inside the course (`.venv/bin/python`) when it lives there; otherwise plain `python`. No
    absolute path is printed (the notebooks' outputs are committed).
    """
    python = "python"
    with contextlib.suppress(ValueError):
        python = str(Path(sys.executable).absolute().relative_to(_ROOT))
    command = " ".join([_shell_word(python), "-m", "utils.hub", *args])
    try:
        root = os.path.relpath(_ROOT, Path(cwd or Path.cwd()).resolve())
    except ValueError:  # another drive (Windows): say it in words
        return f"{command} (in the course's folder)"
    return command if root == os.curdir else f"cd {_shell_word(root)} && {command}"


def fetch_advice(names):
    """The call in a notebook and the terminal command that fetch NAMEs, for where the reader is."""
    quoted = ", ".join(f'"{n}"' for n in names)
    call = f"utils.hub.download({quoted})"
    return (f"run {call} in a cell here, or `{terminal_command('download', *names)}` in a terminal in "
            f"the folder this notebook runs in")


# ---------------------------------------------------------------- the magic

def _source_name(shell, cell):
    """Register the cell's source (so tracebacks show its lines); returns the filename to compile with."""
    compiler = getattr(shell, "compile", None)
    if hasattr(compiler, "cache"):
        return compiler.cache(cell, getattr(shell, "execution_count", 0) or 0)
    name = f"<hub cell {len(linecache.cache)}>"
    linecache.cache[name] = (len(cell), None, cell.splitlines(keepends=True), name)
    return name


def _run_cell_body(shell, cell):
    """Run `cell` in the notebook's namespace, displaying the last expression like Jupyter."""
    filename = _source_name(shell, cell)
    tree = ast.parse(cell, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), shell.user_ns)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), filename, "eval"), shell.user_ns)
        if value is not None:
            shell.displayhook(value)


def parse_names(line):
    names = line.split()
    unknown = [n for n in names if n not in CHECKPOINTS]
    if unknown:
        raise ValueError(f"%%hub: unknown name {', '.join(map(repr, unknown))}; the names are the keys "
                         f"of utils.CHECKPOINTS: {', '.join(CHECKPOINTS)}")
    return names


def run_hub_cell(shell, line, cell):
    """What `%%hub NAME ...` does with its cell (see the module's docstring)."""
    names = parse_names(line)
    for name in names:
        if name in _failed and _failed[name] != cell:  # the failed cell itself tries again
            print(f"Skipped: this cell needs {name}, which could not be loaded above.")
            return
    online = hub_available()
    if not online:
        missing = [n for n in names if not is_cached(n)] if names else ["?"]
        if missing:
            if names:
                what = expectation_for(cell)
                print(f"Skipped: the Hugging Face Hub cannot be reached (offline) and "
                      f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in the local cache."
                      + (f" Online, this cell is meant to show that {what}; this offline run does not show it."
                         if what else "")
                      + f" Where there is network, {fetch_advice(missing)}; then run this cell again.")
            else:
                print(SKIP_MESSAGE)
            return
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # no "Trying to resume download" lines: one line says it all
    try:
        with contextlib.nullcontext() if online else _libraries_offline():
            _run_cell_body(shell, cell)
        for name in names:
            _failed.pop(name, None)
    except Exception as err:
        failure = hub_failure(err)
        if failure is None or not names:
            raise
        cause, todo = failure
        culprits = _culprits(names, err)
        todo = todo.replace("{fetch}", fetch_advice(culprits))
        for name in culprits:
            _failed[name] = cell
        what = ", ".join(f"{n} ({CHECKPOINTS[n].describe()})" for n in culprits)
        print(f"Skipped: could not load {what}: {cause}. To fix: {todo}.")
    finally:
        hub_logger.setLevel(level)


def register_hub_magic(shell=None):
    """Register `%%hub` in IPython; a no-op outside IPython."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
    if shell is None:
        return
    _failed.clear()  # a fresh start for a notebook that runs its set-up cell again
    set_hub_timeouts()

    def hub(line, cell):
        run_hub_cell(shell, line, cell)

    shell.register_magic_function(hub, magic_kind="cell", magic_name="hub")


# ---------------------------------------------------------------- prefetch and status

def _repo_files(checkpoint, api):
    """The files of `checkpoint` that the notebooks use, with their sizes in bytes."""
    info = api.repo_info(checkpoint.repo_id, revision=checkpoint.pinned, repo_type=checkpoint.repo_type,
                         files_metadata=True)
    sizes = {s.rfilename: (s.size or 0) for s in info.siblings or []}
    if checkpoint.files is not None:
        missing = [f for f in checkpoint.files if f not in sizes]
        if missing:
            raise FileNotFoundError(f"{checkpoint.describe()} has no {', '.join(missing)}")
        return {f: sizes[f] for f in checkpoint.files}, info.sha
    if checkpoint.repo_type == "dataset":
        prefix = f"{checkpoint.config}/" if checkpoint.config else ""
        chosen = [f for f in sizes if f.startswith(prefix) or f.endswith(".md")]
        return {f: sizes[f] for f in chosen}, info.sha
    chosen = [f for f in sizes if "/" not in f and f.endswith(_SMALL_FILES) and f not in _SKIP_FILES
              and not f.startswith(("pytorch_model", "model.safetensors", "tf_", "flax_"))]
    if "model.safetensors.index.json" in sizes:
        index = ["model.safetensors.index.json"] + [f for f in sizes if f.startswith("model-") and
                                                    f.endswith(".safetensors")]
    else:
        index = next(([f] for f in _WEIGHTS if f in sizes), [])
        if index == ["pytorch_model.bin.index.json"]:
            index += [f for f in sizes if f.startswith("pytorch_model-") and f.endswith(".bin")]
    return {f: sizes[f] for f in chosen + index}, info.sha


def _size(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def download(*names, out=print):
    """Fetch the files the notebooks use for NAMEs (all of CHECKPOINTS by default) into the cache.

    In a notebook: `utils.hub.download("vit")`, `utils.hub.download("wav2vec2", "librispeech_dummy")`
    (a list works too); then run the skipped cell again. Returns True if everything was fetched.
    Prints the total size first; huggingface_hub shows a progress bar. Data sets are also loaded
    once with datasets, so that its prepared Arrow tables are there offline.
    """
    names = [n for group in names if group is not None
             for n in ([group] if isinstance(group, str) else group)] or list(CHECKPOINTS)
    for name in names:
        _get(name)
    if not hub_available(refresh=True):  # asked again: the network may be back since the set-up cell
        out("The Hugging Face Hub cannot be reached (or HF_HUB_OFFLINE=1 is set): nothing downloaded.")
        return False
    from huggingface_hub import HfApi, snapshot_download

    set_hub_timeouts()
    api = HfApi()
    plan, failed = {}, []
    for name in names:
        try:
            plan[name] = _repo_files(CHECKPOINTS[name], api)
        except Exception as err:  # noqa: BLE001 - one line per name, then the others
            failed.append(_report_failure(name, err, out))
    total = sum(sum(files.values()) for files, _ in plan.values())
    out(f"{len(plan)} name(s), {sum(len(f) for f, _ in plan.values())} files, {_size(total)} in all:")
    for name, (files, _) in plan.items():
        out(f"  {name:<18} {CHECKPOINTS[name].describe():<58} {_size(sum(files.values())):>9}")
    for name, (files, _) in plan.items():
        checkpoint = CHECKPOINTS[name]
        try:
            snapshot_download(checkpoint.repo_id, revision=checkpoint.pinned, repo_type=checkpoint.repo_type,
                              allow_patterns=list(files))
            if checkpoint.repo_type == "dataset":
                import datasets

                datasets.load_dataset(checkpoint.repo_id, checkpoint.config, split=checkpoint.split,
                                      revision=checkpoint.revision)
        except Exception as err:  # noqa: BLE001
            failed.append(_report_failure(name, err, out))
    done = [n for n in plan if n not in failed]
    for name in done:
        _failed.pop(name, None)  # the cells that skipped it run again
    out(f"done: {', '.join(done) or 'nothing'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return not failed


def _report_failure(name, err, out):
    failure = hub_failure(err)
    if failure is None:
        raise err
    todo = failure[1].replace("{fetch}", "run the download again")
    out(f"could not download {name} ({CHECKPOINTS[name].describe()}): {failure[0]}. To fix: {todo}.")
    return name


def status(out=print):
    """Print, for every NAME, whether it can be loaded offline from the local cache."""
    from huggingface_hub import constants

    out(f"cache: {constants.HF_HUB_CACHE}")
    ready = 0
    for name, checkpoint in CHECKPOINTS.items():
        cached = is_cached(name)
        ready += cached
        out(f"  {name:<18} {checkpoint.describe():<58} {'cached' if cached else 'missing'}")
    out(f"{ready} of {len(CHECKPOINTS)} cached; `python -m utils.hub download` fetches the rest")
    return ready == len(CHECKPOINTS)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_download = sub.add_parser("download", help="fetch the checkpoints and data sets into the cache")
    p_download.add_argument("names", nargs="*", help=f"any of: {', '.join(CHECKPOINTS)}")
    sub.add_parser("status", help="say what is in the local cache")
    args = parser.parse_args(argv)
    if args.command == "status":
        return 0 if status() else 1
    unknown = [n for n in args.names if n not in CHECKPOINTS]
    if unknown:
        parser.error(f"unknown name(s) {', '.join(unknown)}; choose from {', '.join(CHECKPOINTS)}")
    return 0 if download(args.names) else 1


if __name__ == "__main__":
    sys.exit(main())
