"""Score notebook 06's shipped speech systems once on the fresh test split (data/speech/fresh_test).

The fresh split (`python scripts/make_speech_corpus.py --fresh-test`) was defined and committed after
every recogniser, decoder setting and experiment had been chosen. Three systems are scored on it, each
with nothing chosen here:

* the grammar-only recogniser (data/speech/model), greedy CTC;
* the open-vocabulary recogniser (data/speech/open_model), greedy CTC;
* the same recogniser with beam search and the word trigram model of scripts/speech_lm.py, at the beam
  width, alpha and beta that script chose on the validation split (read from lm_metrics.json).

The trigram model is rebuilt from the same training text (scripts/train_speech.py's training
transcripts under --corpus-dir), checked against the sentence and word counts of lm_metrics.json, and
the decoder is checked first against the record on the first test split (data/speech/test): its book
CER must equal the stored one, or the script stops before it scores the fresh split. Every fresh
utterance's transcript and edit counts, per system, go to data/speech/fresh_test/scores.json.

    pip install pyctcdecode==0.5.0 kenlm==0.3.0       # kenlm compiles from source (a few minutes)
    python scripts/speech_fresh_test.py
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from utils.core import script_command  # noqa: E402
from utils import speech  # noqa: E402

COLUMNS = ["path", "voice", "speed", "text", "heard", "char_errors", "chars", "word_errors", "words"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", type=Path, default=ROOT / "runs" / "speech_corpus",
                        help="scripts/train_speech.py's synthesised splits (the language model's training text)")
    parser.add_argument("--out", type=Path, default=speech.corpus_dir() / "fresh_test" / "scores.json")
    args = parser.parse_args(argv)
    try:
        import kenlm  # noqa: F401
        import pyctcdecode  # noqa: F401
    except ImportError as error:
        raise SystemExit(f"{error}: pip install pyctcdecode==0.5.0 kenlm==0.3.0") from None
    from transformers import pipeline
    from speech_lm import language_model_text, lm_pipeline

    open_dir = speech.corpus_dir() / "open_model"
    lm = json.loads((open_dir / "lm_metrics.json").read_text())
    text = language_model_text(args.corpus_dir)
    counts = {"sentences": len(text), "words": sum(len(t.split()) for t in text)}
    if any(counts[k] != lm["language_model"][k] for k in counts):
        raise SystemExit(f"language-model text {counts} differs from lm_metrics.json's {lm['language_model']}")
    greedy = {name: pipeline("automatic-speech-recognition", model=str(speech.corpus_dir() / folder), device="cpu")
              for name, folder in [("grammar only", "model"), ("open vocabulary", "open_model")]}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        arpa = speech.write_arpa(text, Path(folder) / "words.arpa", order=lm["language_model"]["order"])
        beam = lm_pipeline(greedy["open vocabulary"], arpa, lm["chosen"]["alpha"], lm["chosen"]["beta"],
                           lm["beam_width"])
        first = speech.score_utterances(beam, speech.load_corpus(root=speech.corpus_dir() / "test"))
        check = speech.error_rates(first[first["kind"] == "book"]).iloc[0]["cer"]
        stored = lm["test"]["beam search + LM"]["book"]["cer"]
        if abs(check - stored) > 1e-3:
            raise SystemExit(f"the decoder gives book CER {check:.4f} on the first test split, the record {stored}")
        fresh = speech.load_corpus(root=speech.corpus_dir() / "fresh_test")
        systems = {**greedy, "open vocabulary + LM": beam}
        rows = []
        for name, asr in systems.items():  # scored once each
            table = speech.score_utterances(asr, fresh)[COLUMNS]
            rows += [{"system": name, **row} for row in table.to_dict("records")]
            print(name, speech.error_rates(table).round(4).to_dict("records")[0], flush=True)
    record = {
        "command": script_command(__file__, argv),
        "systems": list(systems),
        "language_model": {**lm["language_model"], "alpha": lm["chosen"]["alpha"], "beta": lm["chosen"]["beta"],
                           "beam_width": lm["beam_width"]},
        "decoder_check": {"first_test_split_book_cer": round(float(check), 4), "lm_metrics": stored},
        "seconds": round(time.perf_counter() - start),
        "utterances": rows,
    }
    args.out.write_text(json.dumps(record, indent=0) + "\n")
    print(f"wrote {args.out.relative_to(ROOT)}: {len(rows)} rows")


if __name__ == "__main__":
    main()
