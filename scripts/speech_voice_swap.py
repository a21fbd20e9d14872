"""Speak the validation and the test book sentences in each other's voices, and score them.

Notebook 06's open-vocabulary recogniser scores far better on its validation split than on its
test split, and the two splits differ both in their sentences (other passages of the novel) and in
their voices (espeak-ng variants of their own, at their own speeds). This script separates the two:
it speaks the validation split's book sentences (`utils.speech.book_sample("validation", ...)`) and
the test split's (`book_sample("test", ...)`) each in the validation voices and in the test voices,
exactly as `scripts/make_speech_corpus.py` speaks a split (`synthesise_split`, the split's voices
round-robin at its speeds, seeded pitches), and scores the four sets with the shipped recogniser
through the ASR pipeline. Two of the four cells are the splits themselves: the validation
sentences in the validation voices are the book utterances `scripts/train_speech.py` validated
on, and the test sentences in the test voices are the shipped test split's book utterances (the
script checks that their audio is the shipped audio). The other two swap the voices.

The record (`--out`, default data/speech/open_model/voice_swap.json) holds the command and one row
per utterance (which sentences, which voices, voice, speed, text, what was heard, edit counts); the
audio is written under `--work` (not shipped) and reused on a second run. It measures; it chooses
nothing.

    apt-get install -y espeak-ng
    python scripts/speech_voice_swap.py      # about 250 utterances, a few CPU minutes
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from utils import speech  # noqa: E402
from utils.core import script_command  # noqa: E402

SPLITS = ("validation", "test")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("data/speech/open_model"))
    parser.add_argument("--validation-book", type=int, default=60,
                        help="validation book sentences (scripts/train_speech.py's default)")
    parser.add_argument("--test-book", type=int, default=64,
                        help="test book sentences (scripts/make_speech_corpus.py's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("runs/voice_swap"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import make_speech_corpus as corpus
    from transformers import pipeline

    table = corpus.voice_table(args.seed)
    voices = {split: corpus.distinct_voices(table, split) for split in SPLITS}
    n_book = {"validation": args.validation_book, "test": args.test_book}
    sentences = {split: speech.book_sample(split, n_book[split], args.seed) for split in SPLITS}
    asr = pipeline("automatic-speech-recognition", model=str(args.model))
    parts = []
    for said in SPLITS:
        for voiced in SPLITS:
            out = args.work / f"{said}_sentences_{voiced}_voices"
            if not (out / "transcripts.csv").is_file():
                corpus.synthesise_split([("book", t) for t in sentences[said]], voices[voiced],
                                        corpus.SPEEDS[voiced], out, voiced, voiced, args.seed + 2)
            dataset = speech.load_corpus(root=out)
            if said == voiced == "test":  # the shipped test split's book utterances, unchanged
                shipped = speech.load_corpus(root=speech.corpus_dir() / "test")
                for new, old in zip(dataset, shipped.filter(lambda r: r["kind"] == "book")):
                    assert new["text"] == old["text"] and np.array_equal(new["speech"], old["speech"]), \
                        "the resynthesised test audio differs from the shipped test split"
            scores = speech.score_utterances(asr, dataset).assign(sentences=said, voices=voiced)
            print(f"{said} sentences in {voiced} voices: {len(scores)} utterances, "
                  f"CER {scores.char_errors.sum() / scores.chars.sum():.3f}", flush=True)
            parts.append(scores)
    columns = ["sentences", "voices", "voice", "speed", "pitch", "text", "heard",
               "char_errors", "chars", "word_errors", "words"]
    import pandas as pd

    rows = pd.concat(parts)[columns].to_dict("records")
    espeak = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.split("Data at")[0].strip()
    record = {"command": script_command(__file__, argv), "model": str(args.model), "espeak_ng": espeak,
              "voices": voices, "utterances": rows}
    out_path = args.out or args.model / "voice_swap.json"
    out_path.write_text(json.dumps(record, indent=1, default=lambda x: x.item()) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
