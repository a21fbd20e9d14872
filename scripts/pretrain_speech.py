"""wav2vec 2.0's central claim at the scale of notebook 06: pretraining on audio without transcripts
helps when transcripts are few.

Three runs, each on one CPU thread:

1. this script: `Wav2Vec2ForPreTraining` in the recogniser's shape (`utils.speech.pretraining_config`
   with hidden size 144 and 4 layers, as `scripts/train_speech.py` builds it) learns the contrastive
   and diversity objective on the audio of the training split that `scripts/train_speech.py`
   synthesised (its transcripts are never read), for --steps, with the Gumbel temperature annealed
   from 2 to 0.5 as in the paper (arXiv:2006.11477, section 4.2). It saves a `Wav2Vec2ForCTC` whose
   encoder is the pretrained one and whose letter head is new, with the processor, to --out.
2. and 3. `scripts/train_speech.py` fine-tunes with CTC on a tenth of the transcribed utterances,
   from --out and from scratch, with the same budget, for seeds 0, 1 and 2 (seed 0 as below; seeds 1 and 2 add
   `--seed K --data-seed 0` and write to runs/speech_tenth_{pretrained,scratch}_seedK; the shipped records are
   data/speech/pretraining/tenth_*.json, one per arm and seed):

    OMP_NUM_THREADS=1 python scripts/pretrain_speech.py --steps 1800 --out runs/speech_pretrained
    OMP_NUM_THREADS=1 python scripts/train_speech.py --train-book 260 --train-grammar 40 --epochs 30 \\
        --eval-every 150 --max-minutes 20 --init runs/speech_pretrained --out runs/speech_tenth_pretrained
    OMP_NUM_THREADS=1 python scripts/train_speech.py --train-book 260 --train-grammar 40 --epochs 30 \\
        --eval-every 150 --max-minutes 20 --out runs/speech_tenth_scratch

Both write metrics.json with the validation and test scores; this script writes pretraining.json
(the command, the loss at the start and the end) and pretraining_history.csv to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from utils.core import script_command  # noqa: E402
import utils  # noqa: E402
from utils import speech  # noqa: E402


class PretrainingCollator:
    """Pads a batch of waveforms and draws wav2vec 2.0's masked spans and negatives for it."""

    def __init__(self, processor, model, seed=0):
        self.processor, self.model = processor, model
        self.rng = np.random.default_rng(seed)

    def __call__(self, examples):
        from transformers.models.wav2vec2.modeling_wav2vec2 import (_compute_mask_indices,
                                                                    _sample_negative_indices)

        batch = self.processor.feature_extractor([e["speech"] for e in examples], sampling_rate=speech.SAMPLING_RATE,
                                                 padding=True, return_tensors="pt")
        config = self.model.config
        frames = int(self.model._get_feat_extract_output_lengths(batch["input_values"].shape[1]))
        frame_mask = self.model._get_feature_vector_attention_mask(frames, batch["attention_mask"])
        np.random.seed(int(self.rng.integers(2**31)))  # transformers' helpers draw from NumPy's global state
        mask = _compute_mask_indices((len(examples), frames), config.mask_time_prob, config.mask_time_length,
                                     attention_mask=frame_mask, min_masks=2)
        negatives = _sample_negative_indices((len(examples), frames), config.num_negatives, mask_time_indices=mask)
        batch["mask_time_indices"] = torch.tensor(mask, dtype=torch.bool)
        batch["sampled_negative_indices"] = torch.tensor(negatives, dtype=torch.long)
        return batch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", type=Path, default=ROOT / "runs" / "speech_corpus")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden-size", type=int, default=144)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "speech_pretrained")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

    train_dirs = sorted(args.corpus_dir.glob("train_*"))
    if not train_dirs:
        raise SystemExit(f"no training split under {args.corpus_dir}: run scripts/train_speech.py first")
    audio = speech.load_corpus(root=train_dirs[0]).select_columns(["speech"])  # no transcripts
    print(f"audio from {train_dirs[0].name}", flush=True)
    utils.seed_everything(0)
    processor = speech.make_processor(speech.make_vocab([speech.ALPHABET]), args.out)
    shape = dict(hidden_size=args.hidden_size, num_hidden_layers=args.layers, intermediate_size=2 * args.hidden_size,
                 num_attention_heads=4)
    model = Wav2Vec2ForPreTraining(speech.pretraining_config(**shape))
    print(f"{model.num_parameters():,} parameters; {len(audio)} utterances without transcripts", flush=True)

    start, state = time.perf_counter(), {"step": 0}

    def loss_fn(m, batch):  # the loss per masked frame, with the Gumbel temperature annealed 2 -> 0.5
        m.set_gumbel_temperature(max(0.5, 2.0 - 1.5 * state["step"] / args.steps))
        state["step"] += 1
        output = m(**batch)
        return output.loss / batch["mask_time_indices"].sum()

    history = utils.train(model, audio, collate_fn=PretrainingCollator(processor, model), batch_size=args.batch_size,
                          max_steps=args.steps, lr=args.lr, warmup_ratio=0.08, loss_fn=loss_fn, progress=False)
    print(f"pretrained {state['step']} steps in {(time.perf_counter() - start) / 60:.1f} minutes", flush=True)

    ctc = Wav2Vec2ForCTC(speech.small_config(processor, mask_time_prob=0.1, mask_feature_prob=0.05,
                                             mask_feature_length=8, **shape))
    missing, unexpected = ctc.load_state_dict({k: v for k, v in model.state_dict().items()
                                               if k.startswith("wav2vec2.")}, strict=False)
    assert all(k.startswith("lm_head.") for k in missing), missing
    ctc.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    summary = {"command": script_command(__file__, argv), "audio_from": train_dirs[0].name,
               "steps": state["step"], "minutes": round((time.perf_counter() - start) / 60, 1),
               "kept_from_pretraining": len(ctc.state_dict()) - len(missing), "new": sorted(missing),
               "first_loss": round(float(history.loss.head(20).mean()), 4),
               "last_loss": round(float(history.loss.tail(20).mean()), 4)}
    history.to_csv(args.out / "pretraining_history.csv", index=False)
    (args.out / "pretraining.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
