"""Train the small TAPAS of notebook 05 longer than the notebook can, and ship it.

The shipped checkpoint (data/tapas/small_tapas) was trained in five stages, each continuing from the
weights of the one before (--init). The first two use the original five-theme generator:

    python scripts/train_tapas.py --out /tmp/stage1              # 700 tables, 5,000 steps: the operators
    python scripts/train_tapas.py --init /tmp/stage1 --steps 10000 --lookup-tables 4000 --eval-every 1000 \
        --out /tmp/stage2

The first stage learns the operators and lookups by a number ("chapter 4"), which the tokenizer's
numeric-relation channel hands the model; it does not learn to find a row from the words of the
question. The second stage adds one lookup by name per row of 4,000 more tables (22,000
questions), too many to memorise; with --eval-every it prints the accuracy of lookups by name on
other unseen tables as it goes.

    python scripts/train_tapas.py --steps 200 --out /tmp/tapas-try   # a quick try

The broad generator (--generator broad) trains on utils.tapas.generate_split("train") -- 13 table
themes and, for 40% of the tables, a random schema of novel words; the training phrasings of every
question kind -- plus lookups by name (broad_lookups), with a WordPiece vocabulary learned from
data/pride_and_prejudice.txt and the training tables (--vocab-size, default 8000). It scores the
validation split (phrasings of its own, tables half from the 13 themes and half from two themes of
its own) every --eval-every steps, keeps the weights that did best there, and scores validation and
the three development splits (in template, unseen phrasings, unseen themes) at the end. The test
split (data/tapas/test_split.json) is scored only by --test, once, for the chosen model. An --init model gets its embeddings carried over to the new
vocabulary (utils.tapas.transplant_vocabulary). Stages 3 and 4 (about 30 and 75 minutes on one
thread of a 2-core CPU):

    OMP_NUM_THREADS=1 python scripts/train_tapas.py --generator broad --init /tmp/stage2 \
        --tables 2500 --lookup-tables 2500 --steps 8000 --eval-every 2000 --threads 2 --out /tmp/stage3
    OMP_NUM_THREADS=1 python scripts/train_tapas.py --generator broad --init /tmp/stage3 \
        --tables 3000 --lookup-tables 3000 --steps 12000 --eval-every 1500 --threads 1 --out /tmp/stage4 \
      && python scripts/train_tapas.py --score /tmp/stage4

Stage 3 ran before the random schemas and the extra training phrasings were added to the broad
generator, and stage 4 before the generator stopped summing years, ratings and ages and before the
validation split got themes of its own (stage 4's validation accuracy in metrics.json is on the
earlier validation split: the 13 themes in the validation phrasings); rerunning their commands today
trains on a slightly different mix. metrics.json writes stage 4's --init as <stage 3>, the folder
stage 3 was saved to. Stage 4 took 55 minutes (3,289 s for 12,000 steps).

Stage 5, the shipped weights: stage 4 continued on today's generator with its own vocabulary (--keep-vocab), three
times with seeds 0, 1 and 2, each keeping the weights best on the validation split's tables of its own themes
(--choose-on "validation themes", stage 4's weights among the candidates); the commands are in
scripts/tapas_seeds.py, which scores the three on the second test split. Seed 0, the best on validation, is the
folder data/tapas/small_tapas (weights in half precision; metrics.json, history.csv; init_metrics.json and
init_history.csv are stage 4's); stage 4's weights are in the git history (scripts/tapas_seeds.py says where).

What each stage taught: stages 1 and 2 (original five-theme generator, 2,000-token vocabulary) the
operators and the lookups by a number, then one lookup by name for every row of 4,000 more tables;
stage 3 the 13 themes and training phrasings, its vocabulary enlarged to 8,000 tokens with
utils.tapas.transplant_vocabulary keeping the vectors of the tokens both vocabularies hold;
stage 4 the random schemas too, keeping the weights of the best validation evaluation; stage 5 today's
generator, which no longer totals years, ratings and ages. Copy a new folder over
data/tapas/small_tapas only if it is better on validation and keeps the book's four and the original
held-out set (tests/test_tapas.py checks both).

Builds the WordPiece vocabulary from data/tapas/corpus.txt (or loads --init's), generates training
tables and questions (seed 1; lookups seed 3), trains a TapasForQuestionAnswering from
utils.tapas.small_config with the course's training loop (utils.train), scores it through
pipeline("table-question-answering") on held-out tables (seed 2) and on the book's four questions,
and saves model (safetensors), tokenizer, history.csv and metrics.json to --out (default
data/tapas/small_tapas). With --init, the --init model's metrics.json and history.csv are kept
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

TRAIN_SEED, TEST_SEED, LOOKUP_SEED, LOOKUP_EVAL_SEED, BROAD_LOOKUP_SEED = 1, 2, 3, 4, 5
DEV_SPLITS = ("in template", "unseen phrasings", "unseen themes")  # development sets, looked at while designing


def split_scores(pipe, n_tables):
    """Accuracy by kind on validation and the development splits of the broad generator (``n_tables`` tables each)."""
    scores = {}
    for split in ("validation", *DEV_SPLITS):
        table = tapas.accuracy_by_kind(tapas.evaluate(pipe, tapas.generate_split(split, n_tables)))
        scores[split] = {kind: dict(right=int(row.right), asked=int(row.asked), accuracy=round(float(row.accuracy), 4))
                         for kind, row in table.iterrows()}
    return scores


def broad_tokenizer(vocab_size):
    """A TapasTokenizer whose WordPiece vocabulary is learned from the novel and the training tables."""
    from transformers import TapasTokenizer

    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "tables.txt"
        corpus.write_text("\n".join(tapas.broad_corpus_lines()) + "\n", encoding="utf-8")
        vocab = tapas.build_vocab([utils.data_path("pride_and_prejudice.txt"), corpus], folder, vocab_size=vocab_size)
        return TapasTokenizer(str(vocab))


def score(folder, args):
    """Write folder/split_metrics.json: the saved model's accuracy by kind on the broad splits."""
    from transformers import TapasForQuestionAnswering, TapasTokenizer, pipeline

    pipe = pipeline("table-question-answering", model=TapasForQuestionAnswering.from_pretrained(folder),
                    tokenizer=TapasTokenizer.from_pretrained(folder))
    splits = split_scores(pipe, args.split_tables)
    metrics = {
        "command": f"python scripts/train_tapas.py --score {utils.relative(folder)} --split-tables {args.split_tables}",
        "validation_accuracy": splits["validation"]["all"]["accuracy"],
        "splits": splits,
    }
    print(json.dumps(metrics, indent=1))
    (folder / "split_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")


def score_test(folder):
    """Write folder/test_metrics.json: the model's accuracy on data/tapas/test_split.json, by kind, on
    the test's own themes and on the training themes, with 95% intervals that resample whole tables.
    Run once, for the chosen model."""
    from transformers import TapasForQuestionAnswering, TapasTokenizer, pipeline

    pipe = pipeline("table-question-answering", model=TapasForQuestionAnswering.from_pretrained(folder),
                    tokenizer=TapasTokenizer.from_pretrained(folder))
    examples, tables = tapas.load_split(utils.data_path("tapas", "test_split.json"))
    results = tapas.evaluate(pipe, examples).assign(table=tables)
    results["part"] = ["new themes" if t in tapas.TEST_THEMES else "training themes" for t in results["theme"]]
    parts = {"all": results, **{name: part for name, part in results.groupby("part")}}
    metrics = {"command": f"python scripts/train_tapas.py --test {utils.relative(folder)}", "parts": {}}
    for name, part in parts.items():
        table = tapas.accuracy_by_kind(part, groups="table")
        metrics["parts"][name] = {kind: dict(right=int(row.right), asked=int(row.asked), accuracy=round(float(row.accuracy), 4),
                                             low=round(float(row.low), 4), high=round(float(row.high), 4))
                                  for kind, row in table.iterrows()}
    print(json.dumps(metrics, indent=1))
    (folder / "test_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")


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
    parser.add_argument("--generator", choices=["original", "broad"], default="original",
                        help="original: the five-theme generator of the shipped checkpoint; broad: generate_split")
    parser.add_argument("--vocab-size", type=int, default=8000, help="broad generator: WordPiece vocabulary size")
    parser.add_argument("--val-tables", type=int, default=30, help="broad generator: validation tables")
    parser.add_argument("--split-tables", type=int, default=30, help="tables in each test split scored at the end")
    parser.add_argument("--score", default=None, metavar="FOLDER",
                        help="train nothing: score the model in FOLDER on the broad generator's validation and test "
                             "splits and write FOLDER/split_metrics.json")
    parser.add_argument("--test", default=None, metavar="FOLDER",
                        help="train nothing: score the model in FOLDER once on data/tapas/test_split.json and write "
                             "FOLDER/test_metrics.json")
    parser.add_argument("--seed", type=int, default=0,
                        help="broad generator: seed of the training loop and of the training tables' draw (0: the "
                             "splits' own seeds)")
    parser.add_argument("--keep-vocab", action="store_true",
                        help="with --init: keep its tokenizer and vocabulary instead of learning a new one")
    parser.add_argument("--choose-on", choices=["validation", "validation themes"], default="validation",
                        help="broad generator: keep the weights that score best on all of validation, or on its "
                             "tables of VALIDATION_THEMES only; with --init the starting weights are a candidate too")
    parser.add_argument("--out", default=str(utils.data_path("tapas", "small_tapas")))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import TapasForQuestionAnswering, TapasTokenizer, pipeline

    if args.score:
        return score(Path(args.score), args)
    if args.test:
        return score_test(Path(args.test))
    utils.seed_everything(0)
    broad = args.generator == "broad"
    if broad and args.init and args.keep_vocab:
        tokenizer = TapasTokenizer.from_pretrained(args.init)
    elif broad:  # a new vocabulary; an --init model gets its embeddings carried over below
        tokenizer = broad_tokenizer(args.vocab_size)
    elif args.init:  # its own vocabulary: tokenizers does not rebuild a WordPiece vocabulary token for token
        tokenizer = TapasTokenizer.from_pretrained(args.init)
    else:
        with tempfile.TemporaryDirectory() as folder:
            vocab = tapas.build_vocab(utils.data_path("tapas", "corpus.txt"), folder)
            tokenizer = TapasTokenizer(str(vocab))
    start = time.perf_counter()
    if broad:
        offset = 1000 * args.seed  # seed 0: the splits' own seeds, as before --seed existed
        train_examples = tapas.generate_split("train", args.tables, seed=tapas.SPLITS["train"][2] + offset)
        if args.lookup_tables:
            train_examples += tapas.broad_lookups(args.lookup_tables, seed=BROAD_LOOKUP_SEED + offset)
    else:
        train_examples = tapas.generate_examples(args.tables, seed=TRAIN_SEED, sensible=False)  # as stages 1-2 saw it
        if args.lookup_tables:
            train_examples += tapas.generate_lookups(args.lookup_tables, seed=LOOKUP_SEED)
    train_data = tapas.encode_examples(tokenizer, train_examples)
    print(f"{len(train_data)} training questions encoded in {time.perf_counter() - start:.0f} s", flush=True)

    config = tapas.small_config(
        tokenizer.vocab_size, num_hidden_layers=args.layers, hidden_size=args.hidden, intermediate_size=4 * args.hidden
    )
    if args.init:
        model = TapasForQuestionAnswering.from_pretrained(args.init)
        if broad and not args.keep_vocab:
            kept = tapas.transplant_vocabulary(model, TapasTokenizer.from_pretrained(args.init), tokenizer)
            print(f"--init {args.init}: {kept} of {tokenizer.vocab_size} token embeddings carried over", flush=True)
        elif model.config.vocab_size != tokenizer.vocab_size:
            raise SystemExit(f"--init {args.init}: vocabulary of {model.config.vocab_size} tokens, expected {tokenizer.vocab_size}")
    else:
        model = TapasForQuestionAnswering(config)
    lookups = tapas.generate_lookups(10, seed=LOOKUP_EVAL_SEED)
    validation = tapas.generate_split("validation", args.val_tables) if broad else None
    if broad and args.choose_on == "validation themes":
        validation = [e for e in validation if e.theme in tapas.VALIDATION_THEMES]
    best = {"accuracy": -1.0, "step": 0, "state": None}
    kept_steps = Path(args.out) / "evaluations"  # every evaluation's weights, beside the chosen ones (not shipped)

    def lookup_accuracy(model):  # watched during training: the skill the generator's mix teaches last
        pipe = pipeline("table-question-answering", model=model, tokenizer=tokenizer)
        accuracy = float(tapas.evaluate(pipe, lookups)["correct"].mean())
        print(f"lookup by name on unseen tables: {accuracy:.1%}", flush=True)
        return {"lookup_accuracy": accuracy}

    def validation_accuracy(model):  # the broad generator's checkpoint choice: the best validation score
        pipe = pipeline("table-question-answering", model=model, tokenizer=tokenizer)
        accuracy = float(tapas.evaluate(pipe, validation)["correct"].mean())
        best["step"] += args.eval_every or args.steps
        if args.choose_on == "validation themes":
            from safetensors.torch import save_file

            kept_steps.mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      kept_steps / f"step{min(best['step'], args.steps)}.safetensors")
        if accuracy > best["accuracy"]:
            best.update(accuracy=accuracy, state={k: v.detach().clone() for k, v in model.state_dict().items()},
                        chosen=min(best["step"], args.steps))
        print(f"validation accuracy: {accuracy:.1%} (best {best['accuracy']:.1%})", flush=True)
        return {"validation_accuracy": accuracy}

    if broad and args.init and args.choose_on == "validation themes":  # the starting weights are a candidate
        best["step"] = -(args.eval_every or args.steps)
        validation_accuracy(model)
    history = utils.train(
        model, train_data, collate_fn=tapas.collate, batch_size=args.batch_size, max_steps=args.steps, lr=args.lr,
        eval_fn=validation_accuracy if broad else (lookup_accuracy if args.eval_every else None),
        eval_every=args.eval_every, seed=args.seed,
    )
    if broad:
        model = model.cpu()
        model.load_state_dict(best["state"])
        print(f"kept the weights of step {best['chosen']}: validation accuracy {best['accuracy']:.1%}", flush=True)
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
    test = tapas.evaluate(pipe, tapas.generate_examples(args.test_tables, seed=TEST_SEED, sensible=False))  # the regression set
    book_questions, book_table = tapas.book_examples()
    book = [tapas.ask(pipe, book_table, q, gold)["correct"] for q, _, gold in book_questions]
    metrics = {
        "command": (
            f"python scripts/train_tapas.py --tables {args.tables} --steps {args.steps} --batch-size {args.batch_size}"
            f" --lr {args.lr} --layers {args.layers} --hidden {args.hidden} --lookup-tables {args.lookup_tables}"
            f" --test-tables {args.test_tables}"
            + (f" --init {utils.relative(args.init)}" if args.init else "")  # no machine path in a shipped record
            + (f" --generator broad --vocab-size {args.vocab_size} --val-tables {args.val_tables}"
               f" --split-tables {args.split_tables} --eval-every {args.eval_every}" if broad else "")
            + (f" --seed {args.seed}" if args.seed else "") + (" --keep-vocab" if args.keep_vocab else "")
            + (f" --choose-on '{args.choose_on}'" if args.choose_on != "validation" else "")
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
    if broad:
        metrics["validation_accuracy"] = round(best["accuracy"], 4)
        metrics["chosen_on"] = args.choose_on + (f" ({len(validation)} questions)" if validation else "")
        metrics["chosen_step"] = best["chosen"]
        metrics["splits"] = split_scores(pipe, args.split_tables)  # validation and the development splits
    print(json.dumps(metrics, indent=1))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(f"saved to {utils.relative(out)}")


if __name__ == "__main__":
    main()
