"""Train one-layer models with softmax, elu+1 linear, gated and delta-rule attention on multi-query
associative recall (utils.associative_recall) for several numbers of pairs and seeds, and write the result.

    OMP_NUM_THREADS=1 python scripts/associative_recall.py [--kinds softmax linear ...] [--add] [--out data/linear_attention]

Every model gets the same budget (utils.associative_recall.RECALL_RUN: steps, batch, learning rate).
Each is scored on two fixed sets of sequences drawn apart from training: validation (seed 1, the draws
looked at while the recipe was set up) and test (seed 2, scored once here). Writes recall.json: the
command, the settings, and per model, number of pairs and seed the number of right answers in each
test and validation sequence (P queries each), its training seconds and its state size. About 7
minutes on one thread of a 2-core CPU for the first four kinds. `--kinds` trains only those kinds;
with `--add` their runs replace those of the same kinds in an existing recall.json, whose other runs
are kept, and the record's command becomes the two commands joined by &&. `--pairs`, `--seeds` and
`--steps` change those settings, and `--name` the file written, for a side experiment such as the
longer training of notebook 03:

    python scripts/associative_recall.py --kinds linear delta --pairs 64 --seeds 0 --steps 1000 --name recall_longer.json
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from utils.core import script_command  # noqa: E402
from utils import data_path  # noqa: E402
from utils import associative_recall as ar  # noqa: E402

VALIDATION_SEED, TEST_SEED = 1, 2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(data_path("linear_attention")))
    parser.add_argument("--kinds", nargs="+", choices=ar.KINDS, default=None)
    parser.add_argument("--add", action="store_true", help="merge into an existing record of the same name")
    parser.add_argument("--pairs", type=int, nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--name", default="recall.json", help="file name of the record in --out")
    args = parser.parse_args(argv)
    run = dict(ar.RECALL_RUN)
    pairs, kinds, seeds, sequences = run.pop("pairs"), run.pop("kinds"), run.pop("seeds"), run.pop("test_sequences")
    kinds, pairs, seeds = args.kinds or kinds, tuple(args.pairs or pairs), tuple(args.seeds or seeds)
    if args.steps:
        run["steps"] = args.steps
    rows, start = [], time.time()
    for p in pairs:
        for kind in kinds:
            for seed in seeds:
                model, task, seconds = ar.train_recall(kind, p, seed=seed, **run)
                scores = {}
                for split, draw in (("validation", VALIDATION_SEED), ("test", TEST_SEED)):
                    correct, groups = ar.recall_on(model, task, sequences, seed=draw)
                    scores[split] = [int(c) for c in torch.tensor(correct).view(sequences, p).sum(1)]
                rows.append({"kind": kind, "pairs": p, "seed": seed, "seconds": round(seconds, 2),
                             "state_numbers": model.state_numbers(),
                             "validation_correct": scores["validation"], "test_correct": scores["test"]})
                print(f"{kind:>8} P={p:3d} seed {seed}: test recall {sum(scores['test']) / (sequences * p):.3f} "
                      f"({seconds:.1f} s)", flush=True)
    command = script_command(__file__, argv)
    out = Path(args.out)
    minutes = round((time.time() - start) / 60, 1)
    if args.add:
        old = json.loads((out / args.name).read_text())
        rows = [r for r in old["runs"] if r["kind"] not in kinds] + rows
        if command not in old["command"]:
            command = old["command"].strip() + " && " + command
        else:
            command = old["command"]
        minutes = round(old["minutes"] + minutes, 1)
        kinds = [k for k in ar.KINDS if any(r["kind"] == k for r in rows)]
        rows.sort(key=lambda r: (pairs.index(r["pairs"]), kinds.index(r["kind"]), r["seed"]))
    record = {"command": command,
              "settings": {**ar.RECALL_RUN, **run, "pairs": list(pairs), "kinds": list(kinds), "seeds": list(seeds)},
              "splits": {"validation_seed": VALIDATION_SEED, "test_seed": TEST_SEED,
                         "training_seeds": "10000 + seed, fresh sequences every step"},
              "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
              "minutes": minutes, "runs": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / args.name).write_text(json.dumps(record, indent=1) + "\n")
    print("wrote", (out / args.name).relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out)


if __name__ == "__main__":
    main()
