"""Train two-layer attention models whose only difference is the mask (a band, the band with one extra
global token, the band with the query tokens global, the band with as many tokens global at random positions,
dense) on multi-query associative recall, and write the result.

    OMP_NUM_THREADS=1 python scripts/sparse_recall.py [--out data/sparse_attention]

The task is utils.associative_recall.RecallTask: P key-value pairs, then the P keys again as queries, each
query answered by the value of its pair. The model (bidirectional, like Longformer's and BigBird's encoders)
prepends one learned token at position 0 to every sequence; only the masks decide who sees it. Masks, as
utils.sparse_attention mask_mods on the P pairs and P queries shifted by that one position:

- "band": each position sees the positions within WINDOW on each side (the extra token only itself);
- "band + 1 global token": the extra token is global (sees and is seen by everything), as [CLS] in
  Longformer's classification set-up;
- "band + queries global": the P query positions are global instead, as Longformer makes the question
  tokens global for question answering;
- "band + P random global": as many global positions as there are queries, P of the 2P positions drawn at
  random (torch.Generator seeded with each of PLACEMENTS, one placement per seed: three placements, each
  trained with every seed), pairs and queries alike: the control for the one before, with the same number of
  global tokens and about the same share of pairs, placed without regard to the task;
- "dense": every pair.

Every model gets the budget of utils.associative_recall.RECALL_RUN (steps, batch, learning rate, d_model,
heads) and the same seeds. Each is scored on two fixed sets of sequences drawn apart from training:
validation (seed 1) and test (seed 2). Writes recall.json: the command, the settings, and per mask and seed
the number of right answers in each validation and test sequence (P queries each), and for the random
placements which placement. About two minutes on one thread of a 2-core CPU.
"""
import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from utils.core import script_command  # noqa: E402
from utils import data_path  # noqa: E402
from utils import associative_recall as ar  # noqa: E402
from utils import sparse_attention as sa  # noqa: E402

VALIDATION_SEED, TEST_SEED = 1, 2
PAIRS, WINDOW, LAYERS, SEEDS = 16, 4, 2, (0, 1, 2)
PLACEMENTS = (0, 1, 2)
RANDOM = f"band + {PAIRS} random global"


def masks(pairs=PAIRS, window=WINDOW, placement=PLACEMENTS[0]):
    """The five (n, n) boolean masks, n = 2 * pairs + 1 (the extra token first): utils.sparse_attention.recall_masks,
    the random global positions drawn with seed `placement`."""
    return sa.recall_masks(pairs, window, placement)


def jobs():
    """(mask name, placement or None, mask) for every mask to train: the random one once per placement."""
    for name, mask in masks().items():
        if name == RANDOM:
            yield from ((name, placement, masks(placement=placement)[name]) for placement in PLACEMENTS)
        else:
            yield name, None, mask


class MaskedRecall(torch.nn.Module):
    """Embeddings as in utils.associative_recall.RecallModel, learned positions, LAYERS pre-norm attention
    layers that use `mask`, and a readout over the values."""

    def __init__(self, mask, *, layers=LAYERS, d_model=64, heads=2, n_keys=256, n_values=64, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.register_buffer("mask", mask)
        self.heads, self.d_head = heads, d_model // heads
        self.key_emb, self.value_emb = torch.nn.Embedding(n_keys, d_model), torch.nn.Embedding(n_values, d_model)
        self.query_flag = torch.nn.Parameter(torch.randn(d_model) * 0.02)
        self.extra = torch.nn.Parameter(torch.randn(d_model) * 0.02)
        self.position = torch.nn.Parameter(torch.randn(mask.shape[0], d_model) * 0.02)
        self.norms = torch.nn.ModuleList(torch.nn.LayerNorm(d_model) for _ in range(layers))
        self.qkv = torch.nn.ModuleList(torch.nn.Linear(d_model, 3 * d_model) for _ in range(layers))
        self.out = torch.nn.ModuleList(torch.nn.Linear(d_model, d_model) for _ in range(layers))
        self.readout = torch.nn.Sequential(torch.nn.LayerNorm(d_model), torch.nn.Linear(d_model, n_values))

    def forward(self, keys, values, is_query):
        x = self.key_emb(keys) + torch.where(is_query[:, None], self.query_flag, self.value_emb(values))
        b = x.shape[0]
        x = torch.cat([self.extra.expand(b, 1, -1), x], 1) + self.position
        n = x.shape[1]
        for norm, qkv, out in zip(self.norms, self.qkv, self.out):
            q, k, v = (t.view(b, n, self.heads, self.d_head).transpose(1, 2) for t in qkv(norm(x)).chunk(3, -1))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
            x = x + out(y.transpose(1, 2).reshape(b, n, -1))
        return self.readout(x)[:, 1:]


def train(mask, task, seed, run):
    """The schedule of utils.associative_recall.train_recall: AdamW, 10% warm-up, cosine decay."""
    model = MaskedRecall(mask, d_model=run["d_model"], heads=run["heads"], n_keys=task.n_keys,
                         n_values=task.n_values, seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=run["lr"], weight_decay=0.01)
    steps, warm = run["steps"], max(1, run["steps"] // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    gen = torch.Generator().manual_seed(10_000 + seed)
    for _ in range(steps):
        keys, values, is_query, targets = task.batch(run["batch_size"], gen)
        loss = F.cross_entropy(model(keys, values, is_query)[:, task.pairs:].flatten(0, 1), targets.flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return model.eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(data_path("sparse_attention")))
    args = parser.parse_args(argv)
    run = {k: ar.RECALL_RUN[k] for k in ("steps", "batch_size", "lr", "d_model", "heads", "n_keys", "n_values",
                                         "test_sequences")}
    task = ar.RecallTask(PAIRS, run["n_keys"], run["n_values"])
    rows, start = [], time.time()
    for name, placement, mask in jobs():
        for seed in SEEDS:
            begin = time.time()
            model = train(mask, task, seed, run)
            scores = {}
            for split, draw in (("validation", VALIDATION_SEED), ("test", TEST_SEED)):
                keys, values, is_query, targets = task.batch(run["test_sequences"], torch.Generator().manual_seed(draw))
                with torch.no_grad():
                    right = model(keys, values, is_query)[:, PAIRS:].argmax(-1) == targets
                scores[split] = [int(c) for c in right.sum(1)]
            rows.append({"mask": name, "seed": seed, **({} if placement is None else {"placement": placement}),
                         "seconds": round(time.time() - begin, 2),
                         "mask_density": round(mask.float().mean().item(), 4),
                         "validation_correct": scores["validation"], "test_correct": scores["test"]})
            print(f"{name:>22}{'' if placement is None else f' placement {placement}'} seed {seed}: test recall {sum(scores['test']) / (len(scores['test']) * PAIRS):.3f}",
                  flush=True)
    record = {"command": script_command(__file__, argv),
              "settings": {**run, "pairs": PAIRS, "window": WINDOW, "layers": LAYERS, "seeds": list(SEEDS),
                           "random_global_placements": list(PLACEMENTS)},
              "splits": {"validation_seed": VALIDATION_SEED, "test_seed": TEST_SEED,
                         "training_seeds": "10000 + seed, fresh sequences every step"},
              "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
              "minutes": round((time.time() - start) / 60, 1), "runs": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recall.json").write_text(json.dumps(record, indent=1) + "\n")
    written, here = (out / "recall.json").resolve(), Path.cwd().resolve()
    print("wrote", written.relative_to(here) if written.is_relative_to(here) else written)


if __name__ == "__main__":
    main()
