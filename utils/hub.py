"""Hugging Face Hub access: the one check, the named checkpoints, and the `%%hub` cell magic.

Online, a cell that starts with `%%hub` runs as usual. Offline (HF_HUB_OFFLINE=1, or the Hub
unreachable within two seconds) it prints one line saying it was skipped, so Run All completes.
"""
import ast
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

__all__ = ["Checkpoint", "CHECKPOINTS", "hub_available", "register_hub_magic", "SKIP_MESSAGE"]

SKIP_MESSAGE = "Skipped: this cell needs the Hugging Face Hub, which cannot be reached (offline)."


@dataclass(frozen=True)
class Checkpoint:
    repo_id: str
    revision: str | None = None  # the commit a transformers pipeline pins, where one does

    @property
    def card_url(self):
        return f"https://huggingface.co/{self.repo_id}"


# The pretrained checkpoints the course uses, in one place. Revisions are the ones the
# pipeline defaults pin in transformers 5.23 (tests/test_hub.py checks they still agree);
# no pipeline pins GPT-2 (notebook 01 counts its parameters) or the two long-document models
# whose configs notebook 02 reads.
CHECKPOINTS = {
    "vit": Checkpoint("google/vit-base-patch16-224", "3f49326"),
    "tapas": Checkpoint("google/tapas-base-finetuned-wtq", "e3dde19"),
    "wav2vec2": Checkpoint("facebook/wav2vec2-base-960h", "22aad52"),
    "clip": Checkpoint("openai/clip-vit-base-patch32", "3d74acf"),
    "gpt2": Checkpoint("openai-community/gpt2"),
    "longformer": Checkpoint("allenai/longformer-base-4096"),
    "bigbird": Checkpoint("google/bigbird-roberta-base"),
    "llava": Checkpoint("llava-hf/llava-onevision-qwen2-0.5b-ov-hf"),
}

_TRUE = {"1", "on", "yes", "true"}
_cache = {}


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


def _run_cell_body(shell, cell):
    """Run `cell` in the notebook's namespace, displaying the last expression like Jupyter."""
    tree = ast.parse(cell)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<hub cell>", "exec"), shell.user_ns)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), "<hub cell>", "eval"), shell.user_ns)
        if value is not None:
            shell.displayhook(value)


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

    def hub(line, cell):
        if not hub_available():
            print(SKIP_MESSAGE)
            return
        _run_cell_body(shell, cell)

    shell.register_magic_function(hub, magic_kind="cell", magic_name="hub")
