"""python -m utils.benchmarks [--suite S ...] [--long] [--threads N] [--json]: run and print the benchmarks."""
import argparse
import json
import math

from . import run, suites


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.benchmarks", description=__doc__)
    parser.add_argument("--suite", action="append", help=f"suite to run (default all: {suites()})")
    parser.add_argument("--long", action="store_true", help="the long sweep (larger n)")
    parser.add_argument("--threads", type=int, help="torch's intra-op threads for every suite (default: torch's own)")
    parser.add_argument("--json", action="store_true", help="print one JSON list of records")
    args = parser.parse_args(argv)
    df = run(args.suite, long=args.long, threads=args.threads)
    if args.json:
        print(json.dumps([{k: _clean(v) for k, v in row.items()} for row in df.to_dict("records")]))
    elif df.empty:
        print("no benchmark suites registered yet")
    else:
        for _, part in df.groupby("suite", sort=False):  # each suite's own columns
            print(part.dropna(axis=1, how="all").to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
