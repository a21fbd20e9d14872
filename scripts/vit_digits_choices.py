"""The validation runs behind notebook 04's choices for the small ViT and the small CNN.

    python scripts/vit_digits_choices.py                    # writes data/vit_digits/validation.csv
    python scripts/vit_digits_choices.py --fractions 0.1 --shifts 0x0 --out /tmp/try.csv   # a quick try

Both models train with the notebook's one recipe (`utils.vit.train_digits`) on stratified
fractions of the 1,149 training digits of `load_digits_dataset(validation_size=0.2)`, for each
random-shift augmentation in --shifts (sideways x up-down), and are scored on the 288 validation digits; the 360 test
digits are never read. One row per run: model, parameters, max_dx, max_dy, fraction, training digits,
steps, validation accuracy and errors. The notebook reads the file for its data-efficiency curve
and its choice of augmentation, and re-trains the chosen full-data rows itself, printing its result beside the
record's. Every row stores the seconds it took and the exact command that wrote it; the shipped file was
written by `python scripts/vit_digits_choices.py` on one thread of a shared 2-core CPU (10 minutes).
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import utils  # noqa: E402
from utils import vit  # noqa: E402


def run(kind, train_data, validation_data, max_dx, max_dy, seed=0):
    """Train one model of `kind` ("ViT" or "CNN") with the notebook's recipe; its validation score."""
    torch.manual_seed(seed)
    model = vit.build_digits_model(kind)
    history = vit.train_digits(model, train_data, max_dx=max_dx, max_dy=max_dy, seed=seed)
    result = vit.score(vit.predict(model, validation_data), validation_data[:]["labels"].numpy())
    return {"model": kind, "parameters": sum(p.numel() for p in model.parameters()), "max_dx": max_dx, "max_dy": max_dy,
            "training_digits": len(train_data), "steps": len(history),
            "validation_accuracy": round(result["accuracy"], 4), "validation_errors": result["errors"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    parser.add_argument("--shifts", nargs="+", default=["0x0", "1x0", "2x0", "1x1"],
                        help="random shifts as DXxDY: at most DX pixels sideways and DY up or down")
    parser.add_argument("--models", nargs="+", default=["ViT", "CNN"], choices=["ViT", "CNN"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(utils.data_path("vit_digits", "validation.csv")))
    args, command, digits, processor = vit.start_digits_script(__file__, parser, argv)
    validation_data = vit.prepare(digits["validation"], processor)
    rows = []
    for fraction in args.fractions:
        train_data = vit.prepare(vit.subset(digits["train"], fraction, seed=0), processor)
        for shift in args.shifts:
            max_dx, max_dy = (int(v) for v in shift.split("x"))
            for kind in args.models:
                start = time.perf_counter()
                row = {"fraction": fraction, **run(kind, train_data, validation_data, max_dx, max_dy)}
                row.update(seconds=round(time.perf_counter() - start, 1), command=command.strip())
                rows.append(row)
                print({k: v for k, v in row.items() if k != "command"}, flush=True)
    vit.write_records(rows, args.out)


if __name__ == "__main__":
    main()
