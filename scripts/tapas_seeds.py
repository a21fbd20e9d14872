"""Score a fifth training stage of the small TAPAS, trained with three seeds, beside the shipped checkpoint and the
keyword rule, once each on the second test split, and write data/tapas/stage5_runs.json.

The fifth stage continues the fourth stage's weights on today's broad generator, which no longer sums years, ratings
and ages, with the fourth stage's vocabulary. Each seed draws its own training tables and batch
order, and keeps the weights that score best on the validation split's tables of its own two themes (bakeries,
volcanoes; 138 questions of 60 validation tables), the starting weights among the candidates. About 25
minutes a seed on one thread of a 2-core CPU (ten of them encoding the questions), two seeds at a time. The seed
that scored best on validation (seed 0) was then copied to data/tapas/small_tapas in half precision; the fourth
stage's weights are in the history, at commit 9cb99ae0ad69f04f85773e3b1ae8dcdc522aa47b:

    mkdir -p /tmp/stage4 && git archive 9cb99ae0ad69f04f85773e3b1ae8dcdc522aa47b data/tapas/small_tapas | tar -x --strip-components 3 -C /tmp/stage4
    for s in 0 1 2; do OMP_NUM_THREADS=1 python scripts/train_tapas.py --generator broad --init /tmp/stage4 \\
        --keep-vocab --choose-on "validation themes" --tables 3000 --lookup-tables 3000 --steps 3000 --eval-every 500 \\
        --val-tables 60 --threads 1 --seed $s --out /tmp/stage5/seed$s; done
    python scripts/tapas_seeds.py --stage4 /tmp/stage4 /tmp/stage5/seed0 /tmp/stage5/seed1 /tmp/stage5/seed2

The second test split, tapas.generate_split("test2", tapas.TEST2_TABLES), was written down (and its hash pinned in
tests/test_tapas.py) before any of these models was scored on anything but validation; this script scores each
model on it once, with its weights rounded to half precision as the shipped checkpoint stores them. The record keeps every answer's right or wrong, so that intervals over tables and paired tests
can be computed from it, each run's validation scores at every evaluation, and each run's training command.
"""
import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import utils  # noqa: E402
from utils import tapas  # noqa: E402

SHIPPED = "stage 4"
STAGE4_COMMIT = "9cb99ae0ad69f04f85773e3b1ae8dcdc522aa47b"  # the last commit whose data/tapas/small_tapas holds the fourth stage


def answers(pipe, examples):
    """1 or 0 per question of `examples`, in order."""
    return [int(c) for c in tapas.evaluate(pipe, examples)["correct"]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="folders written by train_tapas.py --choose-on 'validation themes'")
    parser.add_argument("--stage4", required=True, help="the fourth stage's folder (see above), which every seed continued")
    parser.add_argument("--out", default=str(utils.data_path("tapas", "stage5_runs.json")))
    args = parser.parse_args(argv)

    import pandas as pd
    from transformers import TapasForQuestionAnswering, TapasTokenizer, pipeline

    def load(folder):  # weights rounded to half precision and back, as data/tapas/small_tapas stores them
        model = TapasForQuestionAnswering.from_pretrained(folder).half().float()
        return pipeline("table-question-answering", model=model, tokenizer=TapasTokenizer.from_pretrained(folder))

    validation = [e for e in tapas.generate_split("validation", 60) if e.theme in tapas.VALIDATION_THEMES]
    test2 = tapas.generate_split("test2", tapas.TEST2_TABLES)
    record = {
        "provenance": utils.core.run_provenance(),  # when the scoring began, and the commit of the code it ran
        "command": "python scripts/tapas_seeds.py --stage4 /tmp/stage4 " + " ".join(f"/tmp/stage5/seed{i}" for i in range(len(args.runs))),
        "stage 4": f"data/tapas/small_tapas at commit {STAGE4_COMMIT}",
        "validation": "the tables of VALIDATION_THEMES among generate_split('validation', 60)",
        "test2": f"generate_split('test2', {tapas.TEST2_TABLES})",
        "questions": {"kind": [e.kind for e in test2], "theme": [e.theme for e in test2], "table": tapas.table_ids(test2),
                      "new theme": [int(e.theme in tapas.TEST2_THEMES) for e in test2]},
        "runs": {},
    }
    shipped = load(args.stage4)
    start = sum(answers(shipped, validation)) / len(validation)
    record["runs"][SHIPPED] = {"command": json.loads((Path(args.stage4) / "metrics.json").read_text())["command"],
                               "validation": round(start, 4), "test2": answers(shipped, test2)}
    for folder in map(Path, args.runs):
        metrics = json.loads((folder / "metrics.json").read_text())
        history = pd.read_csv(folder / "history.csv").dropna(subset=["validation_accuracy"])
        evaluations = {0: round(start, 4), **{int(s): round(float(a), 4) for s, a in zip(history.step, history.validation_accuracy)}}
        seed = int(metrics["command"].split("--seed ")[1].split()[0]) if "--seed " in metrics["command"] else 0
        record["runs"][f"stage 5, seed {seed}"] = {
            "command": re.sub(r"--init \S+", "--init /tmp/stage4", metrics["command"]) + f" --threads 1 --out /tmp/stage5/seed{seed}",
            "validation": metrics["validation_accuracy"], "chosen_step": metrics["chosen_step"],
            "evaluations": evaluations, "train_seconds": metrics["train_seconds"], "test2": answers(load(folder), test2)}
        print(folder, "chosen step", metrics["chosen_step"], "validation", metrics["validation_accuracy"], flush=True)
    record["runs"]["keyword rule"] = {"test2": [int(c) for c in tapas.evaluate_rule(test2)["correct"]]}
    Path(args.out).write_text(json.dumps(record) + "\n")
    for name, run in record["runs"].items():
        print(f"{name:20s} test2 {sum(run['test2']) / len(run['test2']):.1%}")


if __name__ == "__main__":
    main()
