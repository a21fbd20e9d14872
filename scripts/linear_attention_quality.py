"""Train notebook 01's character GPT with softmax and with causal elu+1 linear attention, longer
than notebook 03 can (same models, same data, same steps, same seed), and write the result.

    OMP_NUM_THREADS=1 python scripts/linear_attention_quality.py [--run long] [--out data/linear_attention]

Writes quality.json (the command, the settings, each model's validation and test loss, and the
character n-gram baselines on the same split) and history.csv (training loss and validation loss
over the steps of both models). About 3 minutes per model on one thread of a 2-core CPU.
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from utils import data_path  # noqa: E402
from utils import linear_attention as la  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="long", choices=sorted(la.QUALITY_RUNS))
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--out", default=str(data_path("linear_attention")))
    args = parser.parse_args(argv)
    config = la.QUALITY_RUNS[args.run]
    text = data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")
    start = time.time()
    results, histories, _ = la.compare_attention(text, eval_every=args.eval_every, **config)
    train_text, val_text, test_text = la.split_text(text)
    baselines = {f"{order}-gram": {"val_loss": la.char_ngram_loss(train_text, val_text, order),
                                   "test_loss": la.char_ngram_loss(train_text, test_text, order)}
                 for order in (2, 3, 4, 5)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"command": "python scripts/linear_attention_quality.py " + " ".join(argv or sys.argv[1:]),
              "run": args.run, "settings": config, "eval_every": args.eval_every,
              "results": results.round(4).to_dict(orient="records"), "baselines": baselines,
              "wall_seconds": round(time.time() - start), "torch": torch.__version__,
              "threads": 1, "machine": platform.machine()}
    (out / "quality.json").write_text(json.dumps(record, indent=1) + "\n")
    history = pd.concat([h[["step", "loss", "val_loss"]].assign(attention=name) for name, h in histories.items()])
    history.round(4).to_csv(out / "history.csv", index=False)
    print(results.round(3).to_string())
    print(json.dumps(baselines, indent=1))


if __name__ == "__main__":
    main()
