"""Notebook 04's locality controls: a ViT with 1 x 1 patches and an MLP of the same size, over seeds.

    python scripts/vit_digits_locality.py --out data/vit_digits/locality.csv
    python scripts/vit_digits_locality.py --part shuffled --out data/vit_digits/locality_shuffled.csv
    python scripts/vit_digits_locality.py --vit-seeds 0 --mlp-seeds 0 1 --out /tmp/try.csv   # a quick try

Same data as `scripts/vit_digits_seeds.py`: all 1,149 training digits of `load_digits_dataset(validation_size=0.2)`,
no shift, the 288 validation digits and the 360 test digits, and its training code (`fit`, which calls
`utils.vit.train_digits`). Four parts, each row with the command that wrote it:

- `tune`: the MLP (`utils.vit.DigitsMLP`, about the ViT's number of parameters) over the CNN's grid of
  `utils.vit.SEED_GRIDS` (learning rate x steps) with seed 0, scored on validation only; the best setting
  (the first in grid order on a tie) is the one trained over seeds.
- `seeds`, MLP: the chosen setting with seeds 0-4 (`--mlp-seeds`).
- `seeds`, ViT 1 x 1: the ViT's setting chosen by `vit_digits_seeds.py tune` (learning rate, steps, MLP width),
  unchanged and not tuned again, with `patch_size=1`: 64 pixel tokens plus [CLS]. It is several times as slow
  per step as the 2 x 2 ViT, so by default it is trained with seeds 0-2 only (`--vit-seeds`), which keeps the
  whole script near half an hour of one core on a busy machine.
- `reference`: the 2 x 2 ViT's chosen setting with seed 0 for 500 steps only, the run that exercise 2 of the
  notebook compares its own 500-step run with.

`--part shuffled` writes a fifth part instead of the four above:

- `shuffled`: the 2 x 2 ViT's chosen setting, unchanged, on the digits with their 64 pixels shuffled by the fixed
  permutation of `scripts/vit_digits_shuffle.py` (`numpy.random.default_rng(0).permutation(64)`, the same for the
  training, validation and test digits), with the seed study's seeds 0-4 (`--shuffled-seeds`). Seed k starts from
  the same initial weights and reads the batches in the same order as seed k of `vit_digits_seeds.py seeds` on all
  training digits, so the two can be paired seed by seed: only the pixels inside each 2 x 2 patch differ.

`seeds`, `reference` and `shuffled` rows keep the validation accuracy and the prediction for every test digit, so that the
notebook can compare them with the seeds records of `vit_digits_seeds.py` digit by digit and seed by seed.
"""
import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from utils import vit  # noqa: E402
from vit_digits_seeds import chosen, fit  # noqa: E402  (the seed study's training code and choice rule)

MLP_GRID = vit.SEED_GRIDS["CNN"]  # learning rate x steps, the grid the CNN was tuned on
REFERENCE_STEPS = 500
PERMUTATION_SEED = 0  # the shuffle of scripts/vit_digits_shuffle.py


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vit-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mlp-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--shuffled-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--part", choices=["controls", "shuffled"], default="controls",
                        help="controls: the MLP, the 1 x 1 ViT and the reference; shuffled: the 2 x 2 ViT on shuffled pixels")
    parser.add_argument("--tuning", default=str(ROOT / "data/vit_digits/tuning_vit.csv"))
    parser.add_argument("--out", required=True)
    args, command, digits, processor = vit.start_digits_script(__file__, parser, argv)
    if args.part == "shuffled":
        permutation = np.random.default_rng(PERMUTATION_SEED).permutation(64)
        train_data, validation, test = (vit.prepare_grey_levels(X[:, permutation], y, processor) for X, y in
                                        (vit.digits_arrays(digits[name]) for name in ("train", "validation", "test")))
    else:
        train_data, validation, test = (vit.prepare(digits[name], processor) for name in ("train", "validation", "test"))
    val_labels = validation[:]["labels"].numpy()
    rows = []

    def run(stage, name, kind, setting, seed, keep_test=True):
        start = time.perf_counter()
        model = fit(kind, setting, train_data, seed)
        row = {"stage": stage, "model": name, **setting, "training_digits": len(train_data), "seed": seed,
               "parameters": sum(p.numel() for p in model.parameters()),
               "validation_accuracy": round(float((vit.predict(model, validation) == val_labels).mean()), 4),
               "test_predictions": "".join(str(int(p)) for p in vit.predict(model, test)) if keep_test else "",
               "seconds": round(time.perf_counter() - start, 1), "command": command}
        rows.append(row)
        print({k: v for k, v in row.items() if k != "test_predictions"}, flush=True)
        return row

    vit_setting = chosen(pd.read_csv(args.tuning), "ViT")
    if args.part == "shuffled":
        for seed in args.shuffled_seeds:
            run("shuffled", "ViT 2 x 2, pixels shuffled", "ViT", vit_setting, seed)
        vit.write_records(rows, args.out)
        return

    grid = [dict(zip(MLP_GRID, values)) for values in itertools.product(*MLP_GRID.values())]
    tuned = [run("tune", "MLP", "MLP", setting, 0, keep_test=False) for setting in grid]
    best = max(range(len(tuned)), key=lambda i: (tuned[i]["validation_accuracy"], -i))  # first in grid order on a tie
    for seed in args.mlp_seeds:
        run("seeds", "MLP", "MLP", grid[best], seed)

    for seed in args.vit_seeds:
        run("seeds", "ViT 1 x 1", "ViT", {**vit_setting, "patch_size": 1}, seed)
    run("reference", "ViT 2 x 2", "ViT", {**vit_setting, "steps": REFERENCE_STEPS}, 0)
    vit.write_records(rows, args.out)


if __name__ == "__main__":
    main()
