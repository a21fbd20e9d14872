"""Train the small TAPAS of notebook 05 longer than the notebook can, and ship it.

The shipped checkpoint (data/tapas/small_tapas) was trained in two stages:

    python scripts/train_tapas.py --out /tmp/stage1              # 700 tables, 5,000 steps: the operators
    python scripts/train_tapas.py --init /tmp/stage1 --steps 10000 --lookup-tables 4000 --eval-every 1000

The first stage learns the operators and lookups by a number ("chapter 4"), which the tokenizer's
numeric-relation channel hands the model; it does not learn to find a row from the words of the
question. The second stage adds one lookup by name per row of 4,000 more tables (22,000
questions), too many to memorise, and continues from the first; with --eval-every it prints the
accuracy of lookups by name on other unseen tables as it goes.

    python scripts/train_tapas.py --steps 200 --out /tmp/tapas-try   # a quick try

Builds the WordPiece vocabulary from data/tapas/corpus.txt (or loads --init's), generates training
tables and questions (seed 1; lookups seed 3), trains a TapasForQuestionAnswering from
utils.tapas.small_config with the course's training loop (utils.train), scores it through
pipeline("table-question-answering") on held-out tables (seed 2) and on the book's four questions,
and saves model (safetensors), tokenizer, history.csv and metrics.json to --out (default
data/tapas/small_tapas). With --init, the first stage's metrics.json and history.csv are kept
beside them as init_metrics.json and init_history.csv.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import utils  # noqa: E402
from utils import tapas  # noqa: E402

TRAIN_SEED, TEST_SEED, LOOKUP_SEED, LOOKUP_EVAL_SEED = 1, 2, 3, 4


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=int, default=700, help="training tables (about 6 questions each)")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)  # 2e-3 never separates the cells of a column
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lookup-tables", type=int, default=0, help="extra tables with one lookup by name per row")
    parser.add_argument("--test-tables", type=int, default=25, help="held-out tables (about 6 questions each)")
    parser.add_argument("--eval-every", type=int, default=None, help="score lookups by name on other tables this often")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--init", default=None, help="continue from this saved model instead of a fresh one")
    parser.add_argument("--out", default=str(utils.data_path("tapas", "small_tapas")))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import TapasForQuestionAnswering, TapasTokenizer, pipeline

    utils.seed_everything(0)
    if args.init:  # its own vocabulary: tokenizers does not rebuild a WordPiece vocabulary token for token
        tokenizer = TapasTokenizer.from_pretrained(args.init)
    else:
        with tempfile.TemporaryDirectory() as folder:
            vocab = tapas.build_vocab(utils.data_path("tapas", "corpus.txt"), folder)
            tokenizer = TapasTokenizer(str(vocab))
    start = time.perf_counter()
    train_examples = tapas.generate_examples(args.tables, seed=TRAIN_SEED)
    if args.lookup_tables:
        train_examples += tapas.generate_lookups(args.lookup_tables, seed=LOOKUP_SEED)
    train_data = tapas.encode_examples(tokenizer, train_examples)
    print(f"{len(train_data)} training questions encoded in {time.perf_counter() - start:.0f} s", flush=True)

    config = tapas.small_config(
        tokenizer.vocab_size, num_hidden_layers=args.layers, hidden_size=args.hidden, intermediate_size=4 * args.hidden
    )
    if args.init:
        model = TapasForQuestionAnswering.from_pretrained(args.init)
        if model.config.vocab_size != tokenizer.vocab_size:
            raise SystemExit(f"--init {args.init}: vocabulary of {model.config.vocab_size} tokens, expected {tokenizer.vocab_size}")
    else:
        model = TapasForQuestionAnswering(config)
    lookups = tapas.generate_lookups(10, seed=LOOKUP_EVAL_SEED)

    def lookup_accuracy(model):  # watched during training: the skill the generator's mix teaches last
        pipe = pipeline("table-question-answering", model=model, tokenizer=tokenizer)
        accuracy = float(tapas.evaluate(pipe, lookups)["correct"].mean())
        print(f"lookup by name on unseen tables: {accuracy:.1%}", flush=True)
        return {"lookup_accuracy": accuracy}

    history = utils.train(
        model, train_data, collate_fn=tapas.collate, batch_size=args.batch_size, max_steps=args.steps, lr=args.lr,
        eval_fn=lookup_accuracy if args.eval_every else None, eval_every=args.eval_every,
    )
    seconds = float(history["seconds"].iloc[-1])
    print(f"trained {args.steps} steps in {seconds:.0f} s, last loss {history['loss'].tail(20).mean():.3f}", flush=True)

    out = Path(args.out)
    if args.init:  # read before an --out equal to --init overwrites them
        earlier = {name: (Path(args.init) / name).read_bytes() for name in ("metrics.json", "history.csv")
                   if (Path(args.init) / name).is_file()}
        for name, content in earlier.items():
            out.mkdir(parents=True, exist_ok=True)
            (out / f"init_{name}").write_bytes(content)
    model.save_pretrained(out)  # safetensors
    tokenizer.save_pretrained(out)
    history.round(6).to_csv(out / "history.csv", index=False)

    pipe = pipeline("table-question-answering", model=model, tokenizer=tokenizer)
    test = tapas.evaluate(pipe, tapas.generate_examples(args.test_tables, seed=TEST_SEED))
    book_questions, book_table = tapas.book_examples()
    book = [tapas.ask(pipe, book_table, q, gold)["correct"] for q, _, gold in book_questions]
    metrics = {
        "command": (
            f"python scripts/train_tapas.py --tables {args.tables} --steps {args.steps} --batch-size {args.batch_size}"
            f" --lr {args.lr} --layers {args.layers} --hidden {args.hidden} --lookup-tables {args.lookup_tables}"
            f" --test-tables {args.test_tables}"
            + (f" --init {args.init}" if args.init else "")
        ),
        "train_questions": len(train_data),
        "steps": args.steps,
        "train_seconds": round(seconds),
        "held_out_questions": len(test),
        "held_out_accuracy": round(float(test["correct"].mean()), 4),
        "accuracy_by_kind": {k: round(float(v), 4) for k, v in test.groupby("kind")["correct"].mean().items()},
        "book_questions_right": int(sum(book)),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    print(json.dumps(metrics, indent=1))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(f"saved to {utils.relative(out)}")


if __name__ == "__main__":
    main()
