"""Train notebook 01's character GPT with softmax and with causal elu+1 linear attention, longer
than notebook 03 can, over several seeds (per seed: same data order, same initial weights for both
attentions), and write the record.

    OMP_NUM_THREADS=1 python scripts/linear_attention_quality.py [--run seeds] [--seeds 0 1 2] [--lrs 1e-3 3e-3 1e-2]
        [--out data/linear_attention]

With --lrs, the learning rate is chosen for each attention on its own: the first seed trains each
attention once per learning rate, the one with the lowest validation loss is kept (record: lr_choice,
chosen_lr), and every seed then trains each attention at its chosen rate (the first seed's run at the
chosen rate is reused). Without --lrs both attentions train at the run's lr.

Writes quality.json: the command, the settings, each model's validation and test loss per seed, each
model's loss on every test window of 128 characters per seed (for paired comparisons), and the
character n-gram baselines on the same split (validation and test loss per order, and the test
window losses of the order chosen on validation). history.csv: training loss at every step and
validation loss every --eval-every steps, per seed and attention. About a minute per model and seed
on one thread of a 2-core CPU (the "seeds" run: 1,000 steps).
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from utils.core import script_command  # noqa: E402
from utils import data_path  # noqa: E402
from utils import linear_attention as la  # noqa: E402
from utils.scaling import CharWindows, char_vocab  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="seeds", choices=sorted(la.QUALITY_RUNS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(la.QUALITY_SEEDS))
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--lrs", type=float, nargs="+", default=None,
                        help="learning rates to choose from on validation, per attention (first seed)")
    parser.add_argument("--out", default=str(data_path("linear_attention")))
    args = parser.parse_args(argv)
    config = la.QUALITY_RUNS[args.run]
    text = data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")
    train_text, val_text, test_text = la.split_text(text)
    test_set = CharWindows(test_text, char_vocab(text), config["block_size"])
    start = time.time()
    rows, windows, histories = [], {}, []
    attentions = ("sdpa", la.LINEAR_ATTENTION)
    lrs = args.lrs or [config["lr"]]
    runs, lr_choice = {}, []  # (attention, lr, seed) -> (results, history, models)

    def run(attention, lr, seed):
        if (attention, lr, seed) not in runs:
            runs[attention, lr, seed] = la.compare_attention(text, (attention,), eval_every=args.eval_every,
                                                             seed=seed, **{**config, "lr": lr})
        return runs[attention, lr, seed]

    chosen_lr = {}
    for attention in attentions:
        for lr in lrs:
            results = run(attention, lr, args.seeds[0])[0]
            lr_choice.append({"attention": results.attention[0], "lr": lr, "seed": args.seeds[0],
                              "val_loss": round(float(results.val_loss[0]), 4)})
            print(lr_choice[-1], flush=True)
        mine = [c for c in lr_choice if c["lr"] in lrs and c["attention"] == lr_choice[-1]["attention"]]
        chosen_lr[attention] = min(mine, key=lambda c: c["val_loss"])["lr"]
    for seed in args.seeds:
        parts = [run(attention, chosen_lr[attention], seed) for attention in attentions]
        results = pd.concat([p[0] for p in parts], ignore_index=True)
        results["lr"] = [chosen_lr[a] for a in attentions]
        history = {k: v for p in parts for k, v in p[1].items()}
        models = {k: v for p in parts for k, v in p[2].items()}
        rows += results.assign(seed=seed).to_dict(orient="records")
        for name, model in models.items():
            windows.setdefault(name, []).append([round(x, 5) for x in la.window_losses(model, test_set).tolist()])
            histories.append(history[name][["step", "loss", "val_loss"]].assign(attention=name, seed=seed))
        print(results.assign(seed=seed).round(3).to_string(index=False), flush=True)
    baselines = {f"{order}-gram": {"val_loss": la.char_ngram_loss(train_text, val_text, order),
                                   "test_loss": la.char_ngram_loss(train_text, test_text, order)}
                 for order in (2, 3, 4, 5)}
    chosen = min(baselines, key=lambda k: baselines[k]["val_loss"])
    ngram_windows = la.ngram_window_losses(train_text, test_text, int(chosen.split("-")[0]), config["block_size"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"command": script_command(__file__, argv),
              "run": args.run, "settings": config, "seeds": args.seeds,
              "lr_choice": lr_choice, "chosen_lr": {("softmax (sdpa)" if a == "sdpa" else "elu+1 linear"): lr
                                                    for a, lr in chosen_lr.items()}, "eval_every": args.eval_every,
              "results": pd.DataFrame(rows).round(4).to_dict(orient="records"),
              "test_windows": {"block_size": config["block_size"], "losses": windows,
                               "ngram": {"order": chosen, "losses": [round(x, 5) for x in ngram_windows.tolist()]}},
              "baselines": baselines, "ngram_chosen_on_validation": chosen,
              "wall_seconds": round(time.time() - start), "torch": torch.__version__,
              "threads": 1, "machine": platform.machine()}
    (out / "quality.json").write_text(json.dumps(record) + "\n")
    pd.concat(histories).round(4).to_csv(out / "history.csv", index=False)
    print(json.dumps(baselines, indent=1))


if __name__ == "__main__":
    main()
