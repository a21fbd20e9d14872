"""Train notebook 07's small models to the end of their schedule over several seeds, and keep the record.

    python scripts/train_clip_longer.py                          # every run, seeds 0 1 2
    python scripts/train_clip_longer.py --runs CLIP --seeds 3    # one more seed of one run
    python scripts/train_clip_longer.py --steps 100 --out /tmp/clip_runs.json   # a quick try
    python scripts/train_clip_longer.py --shift 2 --runs CLIP 'order-blind CLIP' --seeds 0
                                            # other compositions held out: data/clip_runs_shift2.json

The data, tokenizer, models and loop of the notebook's "Build it small" (utils.clip.course_data,
small_model, train_contrastive): CLIP with batches drawn at random, CLIP with each two-object scene
and its twin in the same batch, CLIP with an order-blind text encoder, and SigLIP with its bias
starting at the paper's -10 or at -log N (N the batch size), and the CLIP architecture trained with
SigLIP's sigmoid loss (scale 10 and bias -10 at the start, as SigLIP's), so that the loss can be
compared without the architecture. A seed sets the initial weights and
the order of the batches, but it does not fix the run: most runs repeated with the same command
left their earlier loss curves early in training, so a rerun of one seed is another draw.
The pictures are the same for every seed. --shift chooses which
compositions are held out of training (utils.clip.held_out_split; 0 is the notebook's split), and
the record of a shift other than 0 goes to data/clip_runs_shift<k>.json unless --out says otherwise.

Every --eval-every steps a run scores the validation split of utils.clip.ZeroShotTests (naming
among 36 captions, binding), the contrastive loss on validation batches and the learned scale and
bias; it keeps the weights of the step with the best naming + binding on validation, and scores
that checkpoint once on the test split, item by item (ZeroShotTests.outcomes), so that two runs can
be compared on the same test items; it also keeps which of the 36 colour-shape captions that
checkpoint chooses for each held-out test picture and for as many test pictures of trained pairs
(ZeroShotTests.chosen_captions), the control of its naming; when validation chose an earlier step,
the last checkpoint's outcomes and choices are kept beside them (test_last, chosen_last). The
validation batches are those of utils.clip.validation_set, as in the notebook. Each finished run is
merged into --out (data/clip_runs.json) with the command that repeats it, the seconds it took, and
the torch version and CPU it ran on; a run it replaces is kept as an earlier draw of its seed
("earlier_draws", with the commit that recorded it), unless the two gave the same test outcomes.
The runs "... frozen" keep SigLIP's bias at its start, untrained, and are left out unless named:
    python scripts/train_clip_longer.py --runs 'SigLIP, b = -10 frozen' 'SigLIP, b = -log N frozen' \
        --out data/clip_runs_frozen.json
"""
import argparse
import copy
import fcntl
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils import clip  # noqa: E402

BATCH_SIZE = 64
RUNS = {
    "CLIP": dict(kind="clip"),
    "CLIP, twins in a batch": dict(kind="clip", twins=True),
    "order-blind CLIP": dict(kind="order-blind clip"),
    "SigLIP, b = -10": dict(kind="siglip", logit_bias=-10.0),
    "SigLIP, b = -log N": dict(kind="siglip", logit_bias=-math.log(BATCH_SIZE)),
    "CLIP, sigmoid loss, b = -10": dict(kind="sigmoid clip", logit_bias=-10.0),
    "SigLIP, b = -10 frozen": dict(kind="siglip", logit_bias=-10.0, freeze_bias=True),
    "SigLIP, b = -log N frozen": dict(kind="siglip", logit_bias=-math.log(BATCH_SIZE), freeze_bias=True),
}
SIGMOID = ("siglip", "sigmoid clip")  # the kinds trained with the sigmoid loss


def machine():
    """The torch version and CPU of a run: reruns of one seed differ, and these are the likeliest causes."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
             if line.startswith("model name")]
    return {"torch": torch.__version__, "cpu": names[0] if names else platform.processor() or platform.machine()}


def train_one(name, seed, args, data):
    spec = RUNS[name]
    model = clip.small_model(spec["kind"], data["processor"].tokenizer, seed=seed,
                             **({"logit_bias": spec["logit_bias"]} if "logit_bias" in spec else {}))
    if spec.get("freeze_bias"):
        model.logit_bias.requires_grad_(False)  # utils.train optimises only what requires a gradient
    loss_fn = clip.siglip_loss_fn if spec["kind"] in SIGMOID else clip.clip_loss_fn
    best = {"score": -1.0}

    def evaluate(model):
        row = data["validation"](model)
        for key, batches in data["batches"].items():
            row[f"loss_{key}"] = clip.mean_loss(model, data["val_items"], batches, clip.clip_loss_fn) \
                if spec["kind"] not in SIGMOID else float("nan")
        row["logit_scale"] = model.logit_scale.exp().item()
        row["logit_bias"] = model.logit_bias.item() if spec["kind"] in SIGMOID else float("nan")
        score = round(row["naming"] + row["binding"], 6)  # shares of 300 in float32: its noise must not break a tie
        if score >= best["score"]:  # ties: the later step
            best.update(score=score, state=copy.deepcopy(model.state_dict()))
        model.train()
        return row

    start = time.perf_counter()
    history = clip.train_contrastive(model, data["items"], loss_fn=loss_fn, steps=args.steps,
                                     batch_size=BATCH_SIZE, lr=args.lr, hard_negatives=spec.get("twins", False),
                                     eval_fn=evaluate, eval_every=args.eval_every, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    evaluated = history.dropna(subset=["naming"])
    chosen = int(evaluated.loc[(evaluated["naming"] + evaluated["binding"]).round(6)[::-1].idxmax(), "step"])
    last = {}
    if chosen != int(evaluated["step"].iloc[-1]):  # the last checkpoint too, so that either rule can be scored
        last = {"test_last": data["test"].outcomes(model), "chosen_last": data["test"].chosen_captions(model)}
    model.load_state_dict(best["state"])
    rounded = lambda row: {k: int(v) if k == "step" else None if v != v else round(float(v), 4)  # noqa: E731
                           for k, v in row.items()}
    return {
        "command": f"python scripts/train_clip_longer.py --runs '{name}' --seeds {seed} --steps {args.steps}"
                   + (f" --shift {args.shift}" if args.shift else "")
                   + (f" --out {Path(args.out).as_posix()}" if args.out else ""),
        "seconds": round(seconds),
        **machine(),
        "chosen_step": chosen,
        "validation": [rounded(r) for r in evaluated.drop(columns=["epoch", "lr", "seconds"]).to_dict("records")],
        "loss_every_10": history["loss"].iloc[9::10].round(4).tolist(),
        "test": data["test"].outcomes(model),
        "chosen": data["test"].chosen_captions(model),
        **last,
    }


def recorded_in(out: Path) -> str:
    """Where the record's current runs were committed: the last commit of `out`, or "uncommitted"."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if git("diff", "--quiet", "HEAD", "--", str(out)).returncode != 0:
        return "uncommitted"
    return git("log", "-1", "--format=%h", "--", str(out)).stdout.strip() or "uncommitted"


def keep_earlier(record: dict, name: str, seed: str, new: dict, where: str):
    """A rerun of a seed need not repeat it (see the docstring), so the run that `new` replaces is kept
    as an earlier draw of that seed (record["earlier_draws"], read by utils.clip.draws) with `where` it
    was recorded, unless it gave the same test outcomes: a repeat is not another draw."""
    old = record["runs"].get(name, {}).get(seed)
    if old is None or old["test"] == new["test"]:
        return
    earlier = record.setdefault(clip.EARLIER, {}).setdefault(name, {}).setdefault(seed, [])
    earlier.append({"recorded_in": where, **old})


def build_parser():
    """The command line; tests/test_clip.py parses every shipped record's command with it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=[n for n, spec in RUNS.items() if not spec.get("freeze_bias")],
                        choices=list(RUNS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--shift", type=int, default=0, choices=list(clip.HELD_OUT_SHIFTS),
                        help="which compositions are held out (utils.clip.held_out_split)")
    parser.add_argument("--out", default=None, help="the record (default data/clip_runs.json, "
                        "or data/clip_runs_shift<k>.json for --shift k)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)  # a model this small gains nothing from a second thread

    with tempfile.TemporaryDirectory() as tmp:
        train_examples, processor = clip.course_data(tmp, shift=args.shift)
    split = clip.held_out_split(args.shift)
    val = clip.validation_set(processor, BATCH_SIZE, shift=args.shift)
    data = {
        "processor": processor, "items": clip.encode(processor, train_examples), "val_items": val.items,
        "validation": clip.ZeroShotTests(processor, "validation", shift=args.shift),
        "test": clip.ZeroShotTests(processor, "test", shift=args.shift),
        "batches": val.batches,
    }
    out = Path(args.out or ROOT / "data" / ("clip_runs.json" if args.shift == 0 else f"clip_runs_shift{args.shift}.json"))
    record = json.loads(out.read_text()) if out.exists() else {}
    settings = {"steps": args.steps, "lr": args.lr, "batch_size": BATCH_SIZE, "eval_every": args.eval_every}
    if record and {k: record.get(k) for k in settings} != settings:
        raise SystemExit(f"{out} holds runs with other settings {[record.get(k) for k in settings]}; use another --out")
    if record and record.get("shift", 0) != args.shift:
        raise SystemExit(f"{out} holds runs with shift {record.get('shift', 0)}, not {args.shift}; use another --out")
    if args.shift:
        record["shift"] = args.shift
        record["held_out"] = {"pairs": [list(p) for p in split.pairs],
                              "binding": [[list(c), list(s)] for c, s in split.binding]}
    record.update(settings, selection="the validation step with the best naming (36 captions) + binding",
                  tests=list(clip.TESTS),
                  floors={kind: clip.loss_floor(val.examples, b, val.scenes) for kind, b in data["batches"].items()})
    record.setdefault("runs", {})
    where = recorded_in(out)  # where the runs that this command replaces were recorded
    for name in args.runs:
        for seed in args.seeds:
            result = train_one(name, seed, args, data)
            with open(out.with_suffix(".lock"), "w") as lock:  # runs in parallel merge into one file
                fcntl.flock(lock, fcntl.LOCK_EX)
                if out.exists():
                    on_disk = json.loads(out.read_text())
                    record.update({k: on_disk[k] for k in ("runs", clip.EARLIER) if k in on_disk})
                keep_earlier(record, name, str(seed), result, where)
                record["runs"].setdefault(name, {})[str(seed)] = result
                record["runs"] = {run: dict(sorted(record["runs"][run].items(), key=lambda kv: int(kv[0])))
                                  for run in RUNS if run in record["runs"]}
                out.write_text(json.dumps(record, separators=(",", ":")) + "\n")
            out.with_suffix(".lock").unlink(missing_ok=True)
            scores = {test: round(sum(v) / len(v), 3) for test, v in result["test"].items()}
            print(f"{name}, seed {seed}: {result['seconds']} s, step {result['chosen_step']}, test {scores}",
                  flush=True)


if __name__ == "__main__":
    main()
