"""Greedy CTC against beam search with a word language model, for the recogniser of notebook 06.

A word trigram model (`utils.speech.write_arpa`, interpolated absolute discounting) is learned from
the text the recogniser was trained on: every sentence of the novel's training passages
(`utils.speech.book_sentences`, any length) and the grammar sentences of the training split. The
beam search is pyctcdecode's, with the model loaded by kenlm, and runs inside
`pipeline("automatic-speech-recognition", decoder=...)`. The language-model weight alpha and the
word bonus beta are chosen on the validation split (synthesised by scripts/train_speech.py into
--corpus-dir); the test split (data/speech/test) is scored once, greedy and with the language model.
The result goes to DIR/lm_metrics.json.

    pip install pyctcdecode==0.5.0 kenlm==0.3.0       # kenlm compiles from source (a few minutes)
    python scripts/speech_lm.py --model data/speech/open_model

Neither package is in requirements.txt: the notebook reads the shipped lm_metrics.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.core import script_command  # noqa: E402
import utils  # noqa: E402
from utils import speech  # noqa: E402


def language_model_text(corpus_dir: Path) -> list[str]:
    """Training text only: the novel's training passages and the training split's grammar sentences."""
    import pandas as pd

    book = speech.book_sentences(min_words=1, max_words=10_000)["train"]
    grammar = []
    for transcripts in sorted(corpus_dir.glob("train_*/transcripts.csv")):
        table = pd.read_csv(transcripts)
        grammar += list(table.loc[table["kind"] == "grammar", "text"])
    if not grammar:
        raise SystemExit(f"no training transcripts under {corpus_dir}: run scripts/train_speech.py first")
    return book + grammar


def lm_pipeline(greedy, arpa, alpha, beta, beam_width):
    """The greedy pipeline's model inside a pipeline that decodes with pyctcdecode's beam search and the
    kenlm model at `arpa` (language-model weight `alpha`, word bonus `beta`)."""
    from pyctcdecode import build_ctcdecoder
    from transformers import pipeline

    labels = [t for t, _ in sorted(greedy.tokenizer.get_vocab().items(), key=lambda item: item[1])]
    decoder = build_ctcdecoder(labels, kenlm_model_path=str(arpa), alpha=alpha, beta=beta)
    return pipeline("automatic-speech-recognition", model=greedy.model, tokenizer=greedy.tokenizer,
                    feature_extractor=greedy.feature_extractor, decoder=decoder, device="cpu",
                    decoder_kwargs={"beam_width": beam_width})


def scores_with(asr, dataset):
    table = speech.score_utterances(asr, dataset)
    return {kind: speech.error_rates(part, groups="voice").round(4).reset_index().to_dict("records")[0]
            for kind, part in [("all", table), *table.groupby("kind")]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=utils.data_path("speech", "open_model"))
    parser.add_argument("--corpus-dir", type=Path, default=ROOT / "runs" / "speech_corpus")
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--beam-width", type=int, default=50)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.3, 0.5, 0.8, 1.2])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    args = parser.parse_args(argv)
    try:
        import pyctcdecode  # noqa: F401
        import kenlm  # noqa: F401
    except ImportError as error:
        raise SystemExit(f"{error}: pip install pyctcdecode==0.5.0 kenlm==0.3.0") from None
    from transformers import pipeline

    validation_dirs = sorted(args.corpus_dir.glob("validation_*"))
    if not validation_dirs:
        raise SystemExit(f"no validation split under {args.corpus_dir}: run scripts/train_speech.py first")
    validation = speech.load_corpus(root=validation_dirs[0])
    test = speech.load_corpus(root=speech.corpus_dir() / "test")
    text = language_model_text(args.corpus_dir)
    greedy = pipeline("automatic-speech-recognition", model=str(args.model), device="cpu")

    with tempfile.TemporaryDirectory() as folder:
        arpa = speech.write_arpa(text, Path(folder) / "words.arpa", order=args.order)
        start = time.perf_counter()

        def with_lm(alpha, beta):
            return lm_pipeline(greedy, arpa, alpha, beta, args.beam_width)

        grid = []
        for alpha, beta in itertools.product(args.alphas, args.betas):
            rates = scores_with(with_lm(alpha, beta), validation)["all"]
            grid.append({"alpha": alpha, "beta": beta, "cer": rates["cer"], "wer": rates["wer"]})
            print(f"validation alpha {alpha} beta {beta}: CER {rates['cer']:.3f} WER {rates['wer']:.3f}", flush=True)
        best = min(grid, key=lambda row: (row["wer"], row["cer"]))
        metrics = {
            "command": script_command(__file__, argv),
            "language_model": {"order": args.order, "sentences": len(text), "words": sum(len(t.split()) for t in text),
                               "discount": 0.7},
            "beam_width": args.beam_width,
            "validation_grid": grid,
            "chosen": {"alpha": best["alpha"], "beta": best["beta"]},
            "validation_greedy": scores_with(greedy, validation)["all"],
            "test": {"greedy": scores_with(greedy, test),  # scored once each
                     "beam search + LM": scores_with(with_lm(best["alpha"], best["beta"]), test)},
            "seconds": round(time.perf_counter() - start),
        }
    (args.model / "lm_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps(metrics["test"], indent=1))


if __name__ == "__main__":
    main()
