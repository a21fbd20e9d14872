"""Notebook 04's ViT-against-CNN experiment: each recipe tuned on validation, then both over seeds.

    python scripts/vit_digits_seeds.py tune  --models ViT --out data/vit_digits/tuning_vit.csv
    python scripts/vit_digits_seeds.py tune  --models CNN --out data/vit_digits/tuning_cnn.csv
    python scripts/vit_digits_seeds.py seeds --models ViT --tuning data/vit_digits/tuning_vit.csv --fractions 0.1 --out data/vit_digits/seeds_vit_small.csv
    python scripts/vit_digits_seeds.py seeds --models ViT --tuning data/vit_digits/tuning_vit.csv --fractions 0.25 0.5 --out data/vit_digits/seeds_vit_mid.csv
    python scripts/vit_digits_seeds.py seeds --models ViT --tuning data/vit_digits/tuning_vit.csv --fractions 1.0 --out data/vit_digits/seeds_vit_large.csv
    python scripts/vit_digits_seeds.py seeds --models CNN --tuning data/vit_digits/tuning_cnn.csv --out data/vit_digits/seeds_cnn.csv
    python scripts/vit_digits_seeds.py beyond --out data/vit_digits/beyond_vit.csv
    python scripts/vit_digits_seeds.py shift --out data/vit_digits/shift_vit.csv
    python scripts/vit_digits_seeds.py tune --models CNN --grid-limit 1 --out /tmp/try.csv   # a quick try

`tune` trains each model on all 1,149 training digits of `load_digits_dataset(validation_size=0.2)`
(seed 0, no shift: the augmentation that `scripts/vit_digits_choices.py` chose on validation) for every
setting of its grid (`utils.vit.SEED_GRIDS`) and scores it on the 288 validation digits; the test digits are not read.
`seeds` reads the tuning files, takes each model's setting with the best validation accuracy (ties: the
first in grid order, the cheaper one), and trains it with seeds 0-4 on 10%, 25%, 50% and 100% of the
training digits (the subsets of `utils.vit.subset`, seed 0; --fractions splits the work between
processes; the notebook reads every seeds_*.csv), always for the same number of steps (the
chosen setting's), so that a larger data set means more distinct digits, not more updates. Each seeds
row keeps the validation accuracy and the test prediction of every one of the 360 test digits, so that
the notebook can compare two models digit by digit (McNemar) and over seeds. A seed sets the initial
weights and the order of the batches.

Two checks of the ViT's choice, on validation only (no test digit is read): `beyond` trains the settings of
`utils.vit.SEED_GRID_BEYOND` (past the grid's corner: a higher rate, more steps, dropout) with seed 0 on all
training digits, as `tune` does; `shift` trains the ViT's chosen setting with a random sideways shift of up to
1 pixel (`RandomShift(1, 0)`) with seeds 0-2 on all training digits, to set beside the same seeds without a shift
in the seeds records (the shift was chosen by `scripts/vit_digits_choices.py` under a shorter schedule).
"""
import argparse
import itertools
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils import vit  # noqa: E402

GRIDS = vit.SEED_GRIDS  # the settings tried on validation, per model
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
SEEDS = (0, 1, 2, 3, 4)


def settings(kind):
    """Every setting of `kind`'s grid, in grid order."""
    grid = GRIDS[kind]
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def fit(kind, setting, train_data, seed, max_dx=0):
    """Train a fresh model of `kind` with `setting` (lr, steps and, for the ViT, config overrides; `dropout`
    sets both of the ViT's dropout probabilities), each batch shifted sideways by up to `max_dx` pixels."""
    torch.manual_seed(seed)
    config = {k: v for k, v in setting.items() if k not in ("lr", "steps", "dropout")}
    if "dropout" in setting:
        config.update(hidden_dropout_prob=float(setting["dropout"]), attention_probs_dropout_prob=float(setting["dropout"]))
    model = vit.build_digits_model(kind, **config)
    vit.train_digits(model, train_data, max_dx=max_dx, max_dy=0, epochs=0, min_steps=int(setting["steps"]),
                     lr=float(setting["lr"]), seed=seed)
    return model


def validate(kind, setting, train_data, validation, seeds, command, max_dx=0):
    """Rows of validation accuracy for `setting` trained with each of `seeds` (the test digits are not read)."""
    rows = []
    labels = validation[:]["labels"].numpy()
    for seed in seeds:
        start = time.perf_counter()
        model = fit(kind, setting, train_data, seed, max_dx=max_dx)
        accuracy = float((vit.predict(model, validation) == labels).mean())
        rows.append({"model": kind, **setting, "max_dx": max_dx, "seed": seed, "validation_accuracy": round(accuracy, 4),
                     "seconds": round(time.perf_counter() - start, 1), "command": command})
        print(rows[-1], flush=True)
    return rows


def chosen(tuning: pd.DataFrame, kind: str) -> dict:
    """The setting of `kind` with the best validation accuracy (the first in grid order on a tie)."""
    rows = tuning[tuning["model"] == kind]
    if rows.empty:
        raise ValueError(f"no tuning rows for {kind!r}: run the tune stage for it first")
    best = rows.loc[rows["validation_accuracy"].idxmax()]
    setting = {k: best[k].item() if hasattr(best[k], "item") else best[k] for k in GRIDS[kind]}  # numpy -> Python
    # whole numbers read back as floats when another model's file leaves the column empty (NaN) in the same frame
    return {k: int(v) if k != "lr" and float(v).is_integer() else v for k, v in setting.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["tune", "seeds", "beyond", "shift"])
    parser.add_argument("--models", nargs="+", default=["ViT", "CNN"], choices=list(GRIDS))
    parser.add_argument("--tuning", nargs="+", default=[str(ROOT / "data/vit_digits/tuning_vit.csv"),
                                                        str(ROOT / "data/vit_digits/tuning_cnn.csv")])
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--grid-limit", type=int, default=None, help="only the first settings of each grid")
    parser.add_argument("--out", required=True)
    args, command, digits, processor = vit.start_digits_script(__file__, parser, argv)
    validation = vit.prepare(digits["validation"], processor)
    test = vit.prepare(digits["test"], processor)
    val_labels = validation[:]["labels"].numpy()
    rows = []
    if args.stage == "tune":
        train_data = vit.prepare(digits["train"], processor)
        for kind in args.models:
            for setting in settings(kind)[:args.grid_limit]:
                start = time.perf_counter()
                model = fit(kind, setting, train_data, seed=0)
                accuracy = float((vit.predict(model, validation) == val_labels).mean())
                rows.append({"model": kind, **setting, "validation_accuracy": round(accuracy, 4),
                             "seconds": round(time.perf_counter() - start, 1), "command": command})
                print(rows[-1], flush=True)
    elif args.stage == "beyond":
        train_data = vit.prepare(digits["train"], processor)
        for setting in vit.SEED_GRID_BEYOND["ViT"][:args.grid_limit]:
            rows += validate("ViT", setting, train_data, validation, [0], command)
    elif args.stage == "shift":
        train_data = vit.prepare(digits["train"], processor)
        setting = chosen(pd.concat([pd.read_csv(path) for path in args.tuning]), "ViT")
        rows += validate("ViT", setting, train_data, validation, SEEDS[:3], command, max_dx=1)
    else:
        tuning = pd.concat([pd.read_csv(path) for path in args.tuning])
        for kind in args.models:
            setting = chosen(tuning, kind)
            for fraction in args.fractions:
                train_data = vit.prepare(vit.subset(digits["train"], fraction, seed=0), processor)
                for seed in SEEDS:
                    start = time.perf_counter()
                    model = fit(kind, setting, train_data, seed)
                    predicted = vit.predict(model, test)
                    rows.append({"model": kind, **setting, "fraction": fraction, "training_digits": len(train_data),
                                 "seed": seed,
                                 "validation_accuracy": round(float((vit.predict(model, validation) == val_labels)
                                                                    .mean()), 4),
                                 "test_predictions": "".join(str(int(p)) for p in predicted),
                                 "seconds": round(time.perf_counter() - start, 1), "command": command})
                    print({k: v for k, v in rows[-1].items() if k != "test_predictions"}, flush=True)
    vit.write_records(rows, args.out)


if __name__ == "__main__":
    main()
