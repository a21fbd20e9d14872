"""Chinchilla's approach 2 at CPU scale: iso-FLOP profiles of character-level GPT-2 models.

    nice -n 5 python scripts/isoflop_sweep.py                      # the budgets of utils.isoflop.ISOFLOP
    python scripts/isoflop_sweep.py --budgets 3e9 --out /tmp/iso   # one budget, elsewhere
    python scripts/isoflop_sweep.py --budgets 1e10 --seed 1 --out data/isoflop_seeds/seed1   # another seed
    python scripts/isoflop_sweep.py --fixed-steps 600 --seeds 0 1 2 --out data/isoflop_fixed_step   # Kaplan's design
    python scripts/isoflop_sweep.py --runs 1e10:L2-d4:0.135 3e10:L2-d24:0.0015 --out /tmp/iso_more   # chosen runs only

With --fixed-steps, Kaplan's design on the same training code instead (utils.isoflop.run_fixed_steps): every
shape of utils.isoflop.SHAPES for that many steps at every rate of the grid, for each seed of --seeds, evaluated
every --eval-every steps on the validation and the test windows; `chosen` marks the one rate per seed shared
by every size (lowest validation loss averaged over the sizes).

For every budget (counted FLOP), the sizes of utils.isoflop.shapes_for_budget at every learning rate of
the grid, each run with warm-up and cosine-to-10% fitted to its own length. Writes <out>/runs.csv (one
row per run: size, rate, steps, counted FLOP, 6ND, epochs, val and test loss, `chosen` = the rate with the
lowest val loss for that size), <out>/curves.csv (every run's loss curve) and <out>/meta.json (the exact
command, the configuration, the library versions). Only commit records that this script really wrote.

With --runs, only the listed runs, each BUDGET:NAME:LR (a size of utils.isoflop.shapes_for_budget at that
budget, by name): a rate beyond the grid for one size, or another seed of chosen runs; `chosen` then compares
only the rates this command ran for a size (utils.isoflop.load_seed_records compares a seed's records together).
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from utils.core import script_command  # noqa: E402
import utils  # noqa: E402
from utils import isoflop as iso  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=iso.ISOFLOP["budgets"])
    parser.add_argument("--lrs", type=float, nargs="+", default=iso.ISOFLOP["lrs"])
    parser.add_argument("--seed", type=int, default=iso.ISOFLOP["seed"],
                        help="seed of the initialisation and of the batch order")
    parser.add_argument("--out", default=None, help="folder to write (default data/isoflop)")
    parser.add_argument("--fixed-steps", type=int, default=None,
                        help="Kaplan's design: every shape for this many steps (budgets are then ignored)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="with --fixed-steps: the seeds")
    parser.add_argument("--eval-every", type=int, default=iso.FIXED_STEP["eval_every"],
                        help="with --fixed-steps: steps between evaluations")
    parser.add_argument("--runs", nargs="+", default=None, metavar="BUDGET:NAME:LR",
                        help="only these runs (budgets and --lrs are then ignored)")
    args = parser.parse_args(argv)
    if args.out is None and (args.fixed_steps or args.runs):
        parser.error("--fixed-steps and --runs need --out (data/isoflop holds the iso-FLOP records)")

    text = utils.data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")
    start = time.time()
    runs, curves = [], []
    if args.fixed_steps:
        for seed in args.seeds or [args.seed]:
            r, c = iso.run_fixed_steps(text, steps=args.fixed_steps, lrs=args.lrs, seed=seed,
                                       eval_every=args.eval_every, log=print)
            runs.append(r)
            curves.append(c)
    planned = [] if args.fixed_steps else [(b, None, args.lrs) for b in args.budgets]
    if args.runs and not args.fixed_steps:
        planned = []
        for item in args.runs:
            budget, name, lr = item.split(":")
            shape = [s for s in iso.shapes_for_budget(float(budget)) if f"L{s[0]}-d{s[1]}" == name]
            if not shape:
                parser.error(f"--runs {item}: no size {name} at budget {budget}")
            planned.append((float(budget), shape, [float(lr)]))
    for budget, shapes, lrs in planned:
        r, c = iso.run_budget(text, budget, lrs=lrs, shapes=shapes, seed=args.seed, log=print)
        runs.append(r)
        curves.append(c)
    out = Path(args.out) if args.out else utils.data_path("isoflop")
    out.mkdir(parents=True, exist_ok=True)
    runs = pd.concat(runs, ignore_index=True)
    if not args.fixed_steps:  # the rate with the lowest val loss per size, over every call of run_budget
        runs["chosen"] = runs.val_loss == runs.groupby(["budget", "name"]).val_loss.transform("min")
    runs.to_csv(out / "runs.csv", index=False)
    pd.concat(curves, ignore_index=True).to_csv(out / "curves.csv", index=False)
    command = script_command(__file__, argv)
    config = {**iso.ISOFLOP, "budgets": args.budgets, "lrs": args.lrs, "seed": args.seed}
    if args.runs and not args.fixed_steps:
        config = {k: v for k, v in config.items() if k not in ("budgets", "lrs")} | {"runs": args.runs}
    if args.fixed_steps:
        config = {k: v for k, v in config.items() if k not in ("budgets", "sizes_per_budget", "centre", "seed")}
        config |= {"steps": args.fixed_steps, "eval_every": args.eval_every, "seeds": args.seeds or [args.seed],
                   "shapes": iso.SHAPES}
    meta = {"command": command.strip(), "config": config,
            "versions": utils.core.library_versions(), "seconds": round(time.time() - start)}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}/runs.csv, curves.csv, meta.json in {meta['seconds']} s")


if __name__ == "__main__":
    main()
