"""Chinchilla's approach 2 at CPU scale: iso-FLOP profiles of character-level GPT-2 models.

    nice -n 5 python scripts/isoflop_sweep.py                      # the budgets of utils.isoflop.ISOFLOP
    python scripts/isoflop_sweep.py --budgets 3e9 --out /tmp/iso   # one budget, elsewhere
    python scripts/isoflop_sweep.py --budgets 1e10 --seed 1 --out data/isoflop_seeds/seed1   # another seed

For every budget (counted FLOP), the sizes of utils.isoflop.shapes_for_budget at every learning rate of
the grid, each run with warm-up and cosine-to-10% fitted to its own length. Writes <out>/runs.csv (one
row per run: size, rate, steps, counted FLOP, 6ND, epochs, val and test loss, `chosen` = the rate with the
lowest val loss for that size), <out>/curves.csv (every run's loss curve) and <out>/meta.json (the exact
command, the configuration, the library versions). Only commit records that this script really wrote.
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
    args = parser.parse_args(argv)

    text = utils.data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")
    start = time.time()
    runs, curves = [], []
    for budget in args.budgets:
        r, c = iso.run_budget(text, budget, lrs=args.lrs, seed=args.seed, log=print)
        runs.append(r)
        curves.append(c)
    out = Path(args.out) if args.out else utils.data_path("isoflop")
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(runs, ignore_index=True).to_csv(out / "runs.csv", index=False)
    pd.concat(curves, ignore_index=True).to_csv(out / "curves.csv", index=False)
    command = script_command(__file__, argv)
    meta = {"command": command.strip(), "config": {**iso.ISOFLOP, "budgets": args.budgets, "lrs": args.lrs, "seed": args.seed},
            "versions": utils.core.library_versions(), "seconds": round(time.time() - start)}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}/runs.csv, curves.csv, meta.json in {meta['seconds']} s")


if __name__ == "__main__":
    main()
