"""The course's one training loop, built on accelerate.

The same code runs on a CPU, one GPU or several (`accelerate launch script.py`): accelerate
places the model, optimizer and batches; this loop only states the steps.
"""
import math
import time

import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

__all__ = ["train", "default_loss", "lr_multiplier"]


def lr_multiplier(step: int, total: int, warmup_ratio: float = 0.1) -> float:
    """The factor :func:`train` multiplies the learning rate by at `step` (0-based) of `total`:
    a linear warm-up over the first ``int(warmup_ratio * total)`` steps, then a cosine down to 0."""
    warmup = int(warmup_ratio * total)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def default_loss(model, batch):
    """The loss a transformers model computes itself when the batch holds labels."""
    return model(**batch).loss


def _progress_bar(total, disable):
    """tqdm's bar; in a notebook also the handle of its display, to replace it when training ends.

    A notebook widget's text fallback, which GitHub, nbviewer and a closed JupyterLab show, is
    frozen at "0%"; replacing the display with one summary line leaves the finished state there.
    """
    from tqdm.notebook import tqdm as notebook_tqdm

    if disable or not issubclass(tqdm, notebook_tqdm):
        return tqdm(total=total, desc="training", disable=disable), None
    from IPython.display import display

    bar = tqdm(total=total, desc="training", display=False)
    return bar, display(bar.container, display_id=True)


def _check(name, value, low, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or value < low:
        raise ValueError(f"train: {name} must be a number >= {low}, got {value!r}")


def train(model, train_data, *, collate_fn=None, batch_size=32, epochs=1, max_steps=None,
          lr=1e-3, weight_decay=0.01, warmup_ratio=0.1, grad_clip=1.0, loss_fn=None,
          eval_fn=None, eval_every=None, seed=0, progress=True, shuffle=True,
          mixed_precision="no"):
    """Train `model` in place with AdamW, linear warm-up then cosine decay.

    `train_data` is anything a DataLoader takes (a torch or datasets Dataset, a list of
    examples); `collate_fn` turns a list of examples into a batch dict. The number of steps is
    `max_steps` if given, else `epochs` passes over the data. `loss_fn(model, batch)` defaults
    to `model(**batch).loss`. `eval_fn(model)` returns a dict of metrics; it runs every
    `eval_every` steps and at the end. Returns the history as a DataFrame: one row per step
    (step, epoch, loss, lr, seconds) plus the metrics on the rows where eval_fn ran.
    """
    if len(train_data) == 0:
        raise ValueError("train: train_data is empty")
    _check("batch_size", batch_size, 1)
    _check("epochs", epochs, 1)
    _check("max_steps", max_steps, 1, allow_none=True)
    _check("lr", lr, 0)
    _check("warmup_ratio", warmup_ratio, 0)
    _check("eval_every", eval_every, 1, allow_none=True)
    loss_fn = loss_fn or default_loss

    set_seed(seed)
    accelerator = Accelerator(mixed_precision=mixed_precision)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_data, batch_size=batch_size, shuffle=shuffle,
                        collate_fn=collate_fn, generator=generator)
    total = max_steps or epochs * len(loader)

    def schedule(step):
        return lr_multiplier(step, total, warmup_ratio)

    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    history, step, start = [], 0, time.perf_counter()
    bar, shown = _progress_bar(total, disable=not progress or not accelerator.is_main_process)
    model.train()
    while step < total:
        for batch in loader:
            loss = loss_fn(model, batch)
            accelerator.backward(loss)
            if grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            row = {"step": step, "epoch": (step - 1) // len(loader) + 1, "loss": loss.item(),
                   "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - start}
            if eval_fn is not None and (step == total or (eval_every and step % eval_every == 0)):
                model.eval()
                with torch.no_grad():
                    row.update(eval_fn(accelerator.unwrap_model(model)))
                model.train()
            history.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            if step >= total:
                break
    bar.close()
    if shown is not None:  # the saved notebook keeps this line, not a frozen "0%" text of the widget
        from IPython.display import Pretty

        shown.update(Pretty(f"training: {step}/{total} steps done"))
    model.eval()
    accelerator.free_memory()
    return pd.DataFrame(history)
