"""Train the small wav2vec 2.0 recogniser of notebook 06 and save it to data/speech/model.

The notebook can only afford a short live run; this script trains the same model (same
config, processor, collator and the course's one training loop, `utils.train`) for longer
on the CPU, then writes a checkpoint the ASR pipeline loads:

    python scripts/train_speech.py                  # data/README.md lists the runs behind the shipped checkpoint
    python scripts/train_speech.py --epochs 5 --out /tmp/try   # a quick experiment

It prints the word error rate on the held-out split (voices and speeds never heard in
training), measured through `pipeline("automatic-speech-recognition", model=out)`.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jiwer  # noqa: E402
import torch  # noqa: E402

import utils  # noqa: E402
from utils import speech  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-epochs", type=int, default=3, help="epochs between evaluations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this checkpoint instead of from scratch")
    parser.add_argument("--out", type=Path, default=speech.corpus_dir() / speech.CHECKPOINT_DIR)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    utils.seed_everything(args.seed)
    train_set = speech.load_corpus("train")
    heldout = speech.load_corpus("heldout")
    processor = speech.make_processor(speech.make_vocab(list(train_set["text"])), args.out)
    processor.save_pretrained(args.out)
    from transformers import Wav2Vec2ForCTC

    if args.init is not None:  # go on training a saved recogniser (same vocabulary)
        model = Wav2Vec2ForCTC.from_pretrained(args.init)
    else:
        model = Wav2Vec2ForCTC(speech.small_config(processor))
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters")

    best = {"wer": math.inf}

    def held_out_wer(m):  # also saves the best weights so far, so a long run can be stopped early
        hyps = speech.transcribe(m, processor, heldout["speech"])
        wer = jiwer.wer(list(heldout["text"]), hyps)
        if wer < best["wer"]:
            best["wer"] = wer
            m.save_pretrained(args.out)
        print(f"{time.perf_counter() - start:.0f} s: held-out WER {wer:.3f} (best {best['wer']:.3f}); "
              f"{hyps[0]}", flush=True)
        return {"wer": wer}

    start, cpu = time.perf_counter(), time.process_time()
    history = utils.train(model, train_set, collate_fn=speech.CTCCollator(processor, augment=True,
                                                                          seed=args.seed),
                          batch_size=args.batch_size, epochs=args.epochs, lr=args.lr,
                          warmup_ratio=0.1, eval_fn=held_out_wer,
                          eval_every=args.eval_epochs * math.ceil(len(train_set) / args.batch_size),
                          seed=args.seed, progress=False)
    print(history.dropna(subset=["wer"])[["step", "epoch", "loss", "wer"]].to_string(index=False))
    print(f"trained in {time.perf_counter() - start:.0f} s ({time.process_time() - cpu:.0f} s of CPU)")

    processor.save_pretrained(args.out)  # the weights are the best evaluated ones, saved above
    model = Wav2Vec2ForCTC.from_pretrained(args.out)
    train_wer = jiwer.wer(list(train_set["text"]), speech.transcribe(model, processor, train_set["speech"]))
    print(f"training WER of the saved weights: {train_wer:.3f}")
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(args.out), device="cpu")
    hyps = [asr(s)["text"] for s in heldout["speech"]]
    wer = jiwer.wer(list(heldout["text"]), hyps)
    print(f"held-out WER through the pipeline: {wer:.3f}")
    print("book sentence ->", hyps[0])


if __name__ == "__main__":
    main()
