"""Train the small image GPT of notebook 04 longer than the notebook can, and ship it.

    python scripts/train_igpt.py                         # the shipped data/igpt_digits
    python scripts/train_igpt.py --epochs 5 --out /tmp/igpt-try   # a quick try

An `ImageGPTForCausalImageModeling` from `utils.igpt.small_igpt_config` learns the 1,149 training
digits of `utils.vit.load_digits_dataset(validation_size=0.2)` (no labels: only the pixels, each
digit moved sideways by up to one pixel at random) with the course's training loop, `utils.train`. The
validation digits' loss per pixel is measured as it goes and the best epoch's weights are kept;
the 360 test digits are never read. Saves model.safetensors, config.json, history.csv and
metrics.json (the command, the step count, the validation loss) to --out (default data/igpt_digits).
"""
import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import utils  # noqa: E402
from utils import igpt  # noqa: E402
from utils.vit import digits_arrays, load_digits_dataset  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--max-shift", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=5, help="epochs between validation losses")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default=str(utils.data_path(igpt.CHECKPOINT_DIR)))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from transformers import ImageGPTForCausalImageModeling

    digits = load_digits_dataset(validation_size=0.2, seed=0)
    train_tokens = igpt.to_tokens(digits_arrays(digits["train"])[0])
    val_tokens = igpt.to_tokens(digits_arrays(digits["validation"])[0])
    torch.manual_seed(0)
    model = ImageGPTForCausalImageModeling(igpt.small_igpt_config(n_layer=args.layers, n_embd=args.width))
    steps_per_epoch = -(-len(train_tokens) // args.batch_size)
    best = {"val_nll": float("inf")}

    def evaluate(m):
        nll = igpt.pixel_nll(m, val_tokens)
        if nll < best["val_nll"]:
            best.update(val_nll=nll, state=copy.deepcopy(m.state_dict()))
        return {"val_nll": nll}

    start = time.perf_counter()
    history = utils.train(model, list(train_tokens), collate_fn=igpt.TokenShift(args.max_shift),
                          batch_size=args.batch_size, epochs=args.epochs, lr=args.lr,
                          eval_fn=evaluate, eval_every=args.eval_every * steps_per_epoch, progress=False)
    seconds = time.perf_counter() - start
    evaluated = history.dropna(subset=["val_nll"])
    best_step = int(evaluated.loc[evaluated["val_nll"].idxmin(), "step"])
    model.load_state_dict(best["state"])

    given = argv if argv is not None else sys.argv[1:]
    recipe = [a for i, a in enumerate(given) if a != "--out" and (i == 0 or given[i - 1] != "--out")
              and not a.startswith("--out=")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    history[["step", "epoch", "loss", "val_nll"]].to_csv(out / "history.csv", index=False, float_format="%.5f")
    metrics = {
        "command": " ".join(["python scripts/train_igpt.py", *recipe]),  # --out only says where it went
        "train_digits": len(train_tokens), "validation_digits": len(val_tokens),
        "steps": int(history["step"].iloc[-1]), "best_step": best_step,
        "validation_nll_per_pixel": round(best["val_nll"], 4),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(seconds), "threads": args.threads,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps(metrics, indent=1))
    for row in evaluated.itertuples():
        print(f"epoch {row.epoch:3d}  step {row.step:5d}  train loss {row.loss:.3f}  validation nll {row.val_nll:.3f}")


if __name__ == "__main__":
    main()
