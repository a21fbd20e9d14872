"""Notebook 04's shuffled-pixels test: the small CNN on the digits as written and with their 64 pixels shuffled.

    python scripts/vit_digits_shuffle.py --out data/vit_digits/shuffle.csv

One fixed permutation of the 64 pixels (`numpy.random.default_rng(0).permutation(64)`), the same for every digit,
is applied to the training and test digits of `load_digits_dataset(validation_size=0.2, seed=0)`. The small CNN
is trained with its plain recipe (`utils.vit.cnn_over_seeds`: no shift, `train_digits`' default learning rate
and number of steps, the recipe of the notebook's single run) with seeds 0, 1 and 2 on the digits as written and
on the shuffled digits, and each run's prediction for every one of the 360 test digits is kept. A seed sets the
initial weights and the order of the batches.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils import vit  # noqa: E402

PERMUTATION_SEED = 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", required=True)
    args, command, digits, processor = vit.start_digits_script(__file__, parser, argv)
    permutation = np.random.default_rng(PERMUTATION_SEED).permutation(64)
    arrays = {name: vit.digits_arrays(digits[name]) for name in ("train", "test")}
    datasets = {"as written": (vit.prepare(digits["train"], processor), vit.prepare(digits["test"], processor)),
                "shuffled": tuple(vit.prepare_grey_levels(X[:, permutation], y, processor)
                                  for X, y in (arrays["train"], arrays["test"]))}
    labels = arrays["test"][1]
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        predicted = vit.cnn_over_seeds(datasets, seeds=(seed,))
        seconds = round((time.perf_counter() - start) / len(datasets), 1)
        for pixels, (p,) in predicted.items():
            rows.append({"model": "CNN", "pixels": pixels, "permutation_seed": PERMUTATION_SEED, "seed": seed,
                         "test_accuracy": round(float((p == labels).mean()), 4),
                         "test_predictions": "".join(str(int(d)) for d in p), "seconds": seconds,
                         "command": command})
            print({k: v for k, v in rows[-1].items() if k != "test_predictions"}, flush=True)
    vit.write_records(rows, args.out)


if __name__ == "__main__":
    main()
