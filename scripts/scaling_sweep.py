"""The scaling sweep of notebooks/01_scaling_laws.ipynb as a script (presets in utils.scaling.SWEEPS).

    python scripts/scaling_sweep.py --preset gpu_repeated             # one GPU (or the CPU, slowly)
    accelerate launch scripts/scaling_sweep.py --preset gpu_repeated  # several GPUs
    python scripts/scaling_sweep.py --preset cpu --out results.csv
    python scripts/scaling_sweep.py --preset cpu --seed 1 --eval-every 25 --out data/scaling_sweep/cpu_seed1.csv
    python scripts/scaling_sweep.py --preset cpu --lrs 3e-3 5e-3 1.5e-2 4.5e-2 --out data/scaling_sweep/cpu_lr_grid.csv

With --lrs the script chooses the sweep's one learning rate instead: it trains every size at each rate
of the grid and writes, per rate and size, the loss on the validation windows (the first
`--val-windows` windows of the held-out tail, the same windows the iso-FLOP sweep chooses its rates on),
then prints the rate with the lowest mean validation loss over the sizes.

Writes one row per model size (parameter counts, tokens, FLOP as 6ND and counted, held-out loss,
seconds) to a CSV, and with --eval-every the held-out curves of every run (utils.scaling.compute_curves:
step, tokens, FLOP, eval_loss) to a second CSV next to it (<out>_curves.csv). The first line of each
records the command, the device and the library versions that produced it (read them back with
pandas.read_csv(path, comment="#")). Only commit a CSV that this script really wrote.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from utils.core import script_command  # noqa: E402
import utils  # noqa: E402
from utils import scaling as sc  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(sc.SWEEPS), default="gpu_repeated")
    parser.add_argument("--steps", type=int, help="override the preset's number of steps")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order (default 0)")
    parser.add_argument("--eval-every", type=int, default=None, help="evaluate every N steps")
    parser.add_argument("--lr", type=float, help="override the preset's learning rate")
    parser.add_argument("--lrs", type=float, nargs="+", help="choose the rate from this grid on validation")
    parser.add_argument("--val-windows", type=int, default=48, help="validation windows for --lrs (default 48)")
    parser.add_argument("--out", help="CSV to write (default data/scaling_sweep_<preset>.csv)")
    args = parser.parse_args(argv)

    config = dict(sc.SWEEPS[args.preset])
    shapes = config.pop("sizes")
    if args.steps:
        config["steps"] = args.steps
    if args.lr:
        config["lr"] = args.lr
    utils.seed_everything(0)
    text = utils.data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")
    threads = 1 if args.preset == "cpu" else None
    if args.lrs:
        return choose_rate(args, argv, text, shapes, config, threads)
    results, histories, _ = sc.run_sweep(text, shapes, eval_every=args.eval_every, threads=threads,
                                         seed=args.seed, progress=True, **config)
    from accelerate import PartialState

    if PartialState().is_main_process:
        out = Path(args.out or utils.data_path(f"scaling_sweep_{args.preset}.csv"))
        out.parent.mkdir(parents=True, exist_ok=True)
        header = _header(argv)
        with open(out, "w", encoding="utf-8") as f:
            f.write(header)
            results.to_csv(f, index=False)
        print(results.to_string(index=False))
        print(f"wrote {utils.relative(out)}")
        if args.eval_every:
            curves = sc.compute_curves(results, histories, config["batch_size"] * config["block_size"])
            curves_out = out.with_name(out.stem + "_curves.csv")
            with open(curves_out, "w", encoding="utf-8") as f:
                f.write(header)
                curves.to_csv(f, index=False)
            print(f"wrote {utils.relative(curves_out)}")


def _header(argv):
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    versions = ", ".join(f"{k} {v}" for k, v in utils.core.library_versions().items())
    return f"# made by: {script_command(__file__, argv)} | device: {device} | {versions}\n"


def choose_rate(args, argv, text, shapes, config, threads):
    """Train every size at every rate of args.lrs; write the validation loss of each (rate, size)."""
    import pandas as pd

    config = {k: v for k, v in config.items() if k != "lr"}
    vocab = sc.char_vocab(text)
    held = sc.CharWindows(text[int(len(text) * 0.9):], vocab, config["block_size"])  # run_sweep's held-out tail
    val = sc.CharWindows.__new__(sc.CharWindows)
    val.windows = held.windows[:args.val_windows]
    frames = []
    for lr in args.lrs:
        results, _, models = sc.run_sweep(text, shapes, threads=threads, seed=args.seed, progress=True,
                                          lr=lr, **config)
        results["validation_loss"] = [sc.loss_on(models[name], val) for name in results.name]
        frames.append(results.assign(lr=lr))
    grid = pd.concat(frames, ignore_index=True)
    out = Path(args.out or utils.data_path(f"scaling_sweep/{args.preset}_lr_grid.csv"))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(_header(argv))
        grid.to_csv(f, index=False)
    table = grid.pivot(index="name", columns="lr", values="validation_loss")
    print(table.round(3).to_string())
    print(f"lowest mean validation loss over the sizes: lr = {table.mean().idxmin():g}")
    print(f"wrote {utils.relative(out)}")


if __name__ == "__main__":
    main()
