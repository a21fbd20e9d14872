"""Train the small wav2vec 2.0 recogniser of notebook 06 on speech synthesised on the fly.

The notebook can only afford a short live run; this script trains the same model (the config of
`utils.speech.small_config`, the same processor and collator, the course's one training loop
`utils.train`) for longer on the CPU and writes a checkpoint the ASR pipeline loads.

The training and validation utterances are not shipped: the script synthesises them with
espeak-ng (`scripts/make_speech_corpus.py`: sentences of *Pride and Prejudice* split by source
passage plus sentences of the old grammar, training and validation voices and speeds that the
shipped test split never uses) into `--corpus-dir`, once, and reuses them on the next run. The
recogniser spells with the full alphabet (A-Z, apostrophe, space). Training masks spans of the
feature encoder's frames and channels (SpecAugment, the config's `mask_time_prob` and
`mask_feature_prob`) on top of the collator's speed, loudness and noise perturbations. The
weights of the best validation character error rate are kept; the shipped test split
(data/speech/test) is scored once, at the end, through `pipeline("automatic-speech-recognition")`,
and `metrics.json` (the command, validation and test scores) and `history.csv` are written
next to the weights.

    apt-get install -y espeak-ng
    OMP_NUM_THREADS=1 python scripts/train_speech.py --max-minutes 115 --out runs/speech_model  # 2 h
    OMP_NUM_THREADS=1 python scripts/train_speech.py --train-book 40 --train-grammar 8 \\
        --validation-book 8 --validation-grammar 4 --epochs 2 --out /tmp/tiny          # minutes
    python scripts/train_speech.py --score-only data/speech/model                   # test scores

`--max-minutes M` stops at the first validation after M minutes (the best weights are already
saved; history.csv then holds the validations). `--score-only DIR` scores a saved checkpoint on the test split and writes DIR/metrics.json's
"test" entry, without training.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402

from utils.core import script_command  # noqa: E402
import utils  # noqa: E402
from utils import speech  # noqa: E402


class TimeUp(Exception):
    """Raised at a validation once --max-minutes have passed."""


def test_scores(model_dir: Path) -> dict:
    """CER and WER on the shipped test split through the ASR pipeline, overall and by kind/voice/speed."""
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(model_dir), device="cpu")
    scores = speech.score_utterances(asr, speech.load_corpus(root=speech.corpus_dir() / "test"))
    result = {}
    for kind in ("book", "grammar"):
        part = scores[scores["kind"] == kind]
        result[kind] = {by or "all": speech.error_rates(part, by, groups=None if by == "voice" else "voice").round(4).reset_index().to_dict("records")
                        for by in (None, "voice", "speed")}
    return result


def synthesised_split(split: str, n_book: int, n_grammar: int, corpus_dir: Path, seed: int):
    """The split's utterances as a Dataset, synthesised into corpus_dir/split unless already there."""
    import make_speech_corpus

    out = corpus_dir / f"{split}_{n_book}_{n_grammar}_{seed}"
    if not (out / "transcripts.csv").is_file():
        start = time.perf_counter()
        rows = make_speech_corpus.build_open(split, n_book, n_grammar, seed, out)
        print(f"synthesised {len(rows)} {split} utterances in {time.perf_counter() - start:.0f} s",
              flush=True)
    return speech.load_corpus(root=out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-book", type=int, default=100_000,
                        help="book sentences to train on (default: all of the training passages)")
    parser.add_argument("--train-grammar", type=int, default=400, help="grammar sentences to train on")
    parser.add_argument("--validation-book", type=int, default=60)
    parser.add_argument("--validation-grammar", type=int, default=20)
    parser.add_argument("--corpus-dir", type=Path, default=ROOT / "runs" / "speech_corpus")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-every", type=int, default=500, help="steps between validations")
    parser.add_argument("--hidden-size", type=int, default=144)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--mask-time-prob", type=float, default=0.1)
    parser.add_argument("--mask-time-length", type=int, default=5)
    parser.add_argument("--mask-feature-prob", type=float, default=0.05)
    parser.add_argument("--mask-feature-length", type=int, default=8)
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop at the first validation after this many minutes of training")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the weights, the batch order and the augmentations")
    parser.add_argument("--data-seed", type=int, default=None,
                        help="seeds which sentences, voices and speeds are synthesised (default: --seed), "
                             "so that runs of several --seed values can train on the same utterances")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this checkpoint (same full-alphabet vocabulary)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "speech_model")
    parser.add_argument("--score-only", type=Path, default=None, metavar="DIR",
                        help="score the checkpoint in DIR on the test split; no training")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.score_only is not None:
        metrics_file = args.score_only / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        metrics["test"] = test_scores(args.score_only)
        metrics_file.write_text(json.dumps(metrics, indent=1) + "\n")
        print(json.dumps({k: v["all"] for k, v in metrics["test"].items()}, indent=1))
        return

    data_seed = args.seed if args.data_seed is None else args.data_seed
    utils.seed_everything(args.seed)
    train_set = synthesised_split("train", args.train_book, args.train_grammar, args.corpus_dir, data_seed)
    validation = synthesised_split("validation", args.validation_book, args.validation_grammar,
                                   args.corpus_dir, data_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    processor = speech.make_processor(speech.make_vocab([speech.ALPHABET]), args.out)
    processor.save_pretrained(args.out)
    from transformers import Wav2Vec2ForCTC

    if args.init is not None:
        model = Wav2Vec2ForCTC.from_pretrained(args.init)
        if model.config.vocab_size != len(processor.tokenizer):
            sys.exit(f"--init {args.init}: its vocabulary has {model.config.vocab_size} tokens, "
                     f"the full alphabet {len(processor.tokenizer)}")
    else:
        config = speech.small_config(
            processor, hidden_size=args.hidden_size, num_hidden_layers=args.layers,
            intermediate_size=2 * args.hidden_size, num_attention_heads=4,
            mask_time_prob=args.mask_time_prob, mask_time_length=args.mask_time_length,
            mask_feature_prob=args.mask_feature_prob, mask_feature_length=args.mask_feature_length)
        model = Wav2Vec2ForCTC(config)
    print(f"{model.num_parameters():,} parameters; {len(train_set)} training and "
          f"{len(validation)} validation utterances", flush=True)

    import jiwer

    best = {"cer": math.inf}
    evaluations = {"n": 0, "records": []}

    def validate(m):  # keeps the weights of the best validation CER so far
        hyps = speech.transcribe(m, processor, validation["speech"])
        cer = jiwer.cer(list(validation["text"]), hyps)
        wer = jiwer.wer(list(validation["text"]), hyps)
        evaluations["n"] += 1
        if cer < best["cer"]:
            best.update(cer=cer, wer=wer, evaluation=evaluations["n"])
            m.save_pretrained(args.out)
        elapsed = time.perf_counter() - start
        print(f"{elapsed:.0f} s: validation CER {cer:.3f} WER {wer:.3f} "
              f"(best CER {best['cer']:.3f}); {hyps[0]!r}", flush=True)
        m.train()
        evaluations["records"].append({"evaluation": evaluations["n"], "seconds": round(elapsed),
                                       "validation_cer": cer, "validation_wer": wer})
        if args.max_minutes is not None and elapsed > 60 * args.max_minutes:
            raise TimeUp
        return {"validation_cer": cer, "validation_wer": wer}

    import pandas as pd

    start = time.perf_counter()
    try:
        history = utils.train(model, train_set, collate_fn=speech.CTCCollator(processor, augment=True,
                                                                              seed=args.seed),
                              batch_size=args.batch_size, epochs=args.epochs, lr=args.lr,
                              warmup_ratio=0.05, eval_fn=validate, eval_every=args.eval_every,
                              seed=args.seed, progress=False)
        stopped = False
    except TimeUp:  # out of time: the record is the validations (the best weights are saved)
        history, stopped = pd.DataFrame(evaluations["records"]), True
    minutes = (time.perf_counter() - start) / 60
    history.to_csv(args.out / "history.csv", index=False)
    evaluated = history.dropna(subset=["validation_cer"])
    print(evaluated.to_string(index=False))
    best["stopped_by_time"] = stopped
    processor.save_pretrained(args.out)  # the weights are the best validated ones, saved above
    metrics = {
        "command": script_command(__file__, argv),
        "parameters": model.num_parameters(), "train_utterances": len(train_set),
        "validation_utterances": len(validation), "training_minutes": round(minutes, 1),
        "validation": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in best.items()},
        "test": test_scores(args.out),  # scored once, with the kept weights
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps({k: v["all"] for k, v in metrics["test"].items()}, indent=1))


if __name__ == "__main__":
    main()
