"""Train notebook 07's three small models for longer than the notebook can, and keep the record.

    python scripts/train_clip_longer.py                     # 1,500 steps each, about 6 minutes on one core
    python scripts/train_clip_longer.py --steps 100 --out /tmp/clip_runs.json   # a quick try

The same data, tokenizer, models, loop and learning rate as the notebook's "Build it small"
(2,048 single-object and 2,048 two-object training pictures, seed 0): CLIP with batches drawn at
random, SigLIP the same way, and CLIP with each two-object scene and its twin in the same batch.
Every --eval-every steps it records the zero-shot naming and binding accuracy on the validation
pictures (utils.clip.ZeroShotTests, seed 2) and the contrastive loss on validation batches (seed 3)
with the loss floor of those batches. Writes data/clip_longer_runs.json: the command, the floors,
and for each run the loss every 10 steps and the evaluations.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import CLIPImageProcessor, CLIPProcessor  # noqa: E402

from utils import clip  # noqa: E402

RUNS = {"CLIP": ("clip", False), "SigLIP": ("siglip", False), "CLIP, twins in a batch": ("clip", True)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "clip_longer_runs.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    train_examples = clip.make_examples(2048, seed=0) + clip.make_pair_examples(1024, seed=0)
    val_examples = clip.make_examples(512, seed=3) + clip.make_pair_examples(256, seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = clip.build_tokenizer([e["caption"] for e in train_examples], tmp)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    items, val_items = clip.encode(processor, train_examples), clip.encode(processor, val_examples)
    tests = clip.ZeroShotTests(processor, "validation")
    scenes = clip.scene_distribution(0.5)
    batches = {hard: clip.make_batches(len(val_items), 64, 16, hard_negatives=hard, seed=3)
               for hard in (False, True)}
    floors = {("twins" if hard else "random"): clip.loss_floor(val_examples, b, scenes)
              for hard, b in batches.items()}

    record = {"command": " ".join(["python scripts/train_clip_longer.py", *(argv or sys.argv[1:])]),
              "steps": args.steps, "lr": args.lr, "batch_size": 64, "floors": floors, "runs": {}}
    for name, (kind, hard) in RUNS.items():
        model = clip.small_model(kind, tokenizer)
        loss_fn = clip.clip_loss_fn if kind == "clip" else clip.siglip_loss_fn

        def evaluate(model):
            row = tests(model)
            if kind == "clip":
                for key, b in batches.items():
                    row["loss_" + ("twins" if key else "random")] = clip.mean_loss(model, val_items, b, loss_fn)
            row["logit_scale"] = model.logit_scale.exp().item()
            return row

        start = time.perf_counter()
        history = clip.train_contrastive(model, items, loss_fn=loss_fn, steps=args.steps,
                                         lr=args.lr, hard_negatives=hard, eval_fn=evaluate,
                                         eval_every=args.eval_every, progress=False)
        evaluated = history.dropna(subset=["naming"])
        record["runs"][name] = {
            "seconds": round(time.perf_counter() - start),
            "loss_every_10": history["loss"].iloc[::10].round(4).tolist(),
            "evaluations": evaluated.drop(columns=["epoch", "lr", "seconds"]).round(4).to_dict("records"),
        }
        print(name, evaluated.drop(columns=["epoch", "lr"]).round(3).to_string(), sep="\n", flush=True)

    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
