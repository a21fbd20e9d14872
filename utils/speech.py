"""Speech helpers of notebook 06: the synthetic corpus, a small wav2vec 2.0 recogniser, CTC.

* `load_corpus` reads data/speech/transcripts.csv into a `datasets.Dataset` and reads every
  audio file with soundfile inside `Dataset.map`, the way the book reads SUPERB; a missing,
  unreadable or wrongly sampled file stops it with an error that names the file.
* `frames_per_second` / `num_frames` derive wav2vec 2.0's frame rate from a `Wav2Vec2Config`.
* `ctc_forward` computes the CTC loss by the forward (alpha) recursion, to be checked against
  `torch.nn.functional.ctc_loss`; `blank_positions` says where greedy CTC's blanks fall.
* `ctc_log_probs` gives a CTC pipeline's per-frame log-probabilities for one waveform;
  `greedy_ctc_steps` shows greedy CTC decoding one step at a time; `ctc_segments` and
  `plot_ctc_alignment` draw which frames emitted which character.
* `make_processor`, `small_config`, `CTCCollator` and `transcribe` are the pieces the small
  recogniser is built, trained and evaluated with.
* `pretraining_config` and `pretraining_losses` spell out wav2vec 2.0's self-supervised objective
  (quantised targets, sampled negatives, contrastive and diversity losses) on a
  `Wav2Vec2ForPreTraining`, step by step, to be checked against the model's own loss.
* `score_utterances` and `error_rates` score an ASR pipeline: CER and WER pooled over utterances,
  with `utils.evaluation.bootstrap` intervals over the test utterances for one fixed recogniser
  (whole voices resampled with ``groups="voice"``); `compare_cer` compares two systems on the
  same utterances (paired over voices) and `group_spread_test` asks whether voices differ more
  than random groups of the same utterances would.
"""
from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from .core import data_path

__all__ = [
    "SAMPLING_RATE", "BOOK_SENTENCE", "CHECKPOINT_DIR", "corpus_dir", "read_transcripts",
    "read_speech", "load_corpus", "make_vocab", "make_processor", "small_config",
    "frames_per_second", "receptive_field", "num_frames", "CTCCollator", "augment", "greedy_ctc_steps",
    "ctc_segments", "ctc_words", "plot_ctc_alignment", "transcribe", "pretraining_config", "pretraining_losses",
    "ALPHABET", "normalise_text", "book_sentences", "score_utterances", "error_rates", "near_misses",
    "ctc_forward", "blank_positions", "frame_string", "group_spread_test", "compare_cer", "voice_swap_table",
    "librispeech_sample", "print_test_split", "print_mask", "ctc_log_probs", "OPEN_SPEEDS", "system_scores",
    "voice_t",
]

SAMPLING_RATE = 16_000
BOOK_SENTENCE = (
    "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES AND WE ARE GLAD TO WELCOME HIS GOSPEL"
)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ' "  # what the open-vocabulary corpus spells with
COLUMNS = ["path", "text", "split", "voice", "speed", "pitch", "seconds"]
CHECKPOINT_DIR = "model"  # the shipped recogniser, inside data/speech
# words a minute of each split of the open-vocabulary corpus (scripts/make_speech_corpus.py speaks them)
OPEN_SPEEDS = {"train": [120, 130, 150, 170, 190, 200], "validation": [135, 185], "test": [140, 160, 180]}


def corpus_dir():
    """data/speech, where the corpus and the trained checkpoint live."""
    return data_path("speech")


def read_transcripts(root=None):
    """The transcripts table (a DataFrame), checked for the columns the course relies on."""
    root = Path(root) if root is not None else corpus_dir()
    csv = root / "transcripts.csv"
    if not csv.is_file():
        raise FileNotFoundError(f"speech corpus: no transcripts file {csv.name} in {root.name}/; "
                                "run scripts/make_speech_corpus.py to build the corpus")
    table = pd.read_csv(csv)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"speech corpus: {csv.name} lacks the column(s) {missing}")
    if table.empty:
        raise ValueError(f"speech corpus: {csv.name} lists no utterances")
    return table


def read_speech(path, sampling_rate=SAMPLING_RATE):
    """Read one mono audio file as float32; a missing, corrupt or mis-sampled file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"speech corpus: audio file {path.name} is missing ({path})")
    try:
        speech, rate = sf.read(path, dtype="float32")
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise ValueError(f"speech corpus: audio file {path.name} cannot be read ({err})") from err
    if rate != sampling_rate:
        raise ValueError(f"speech corpus: audio file {path.name} is sampled at {rate} Hz, "
                         f"expected {sampling_rate} Hz")
    if speech.ndim != 1:
        raise ValueError(f"speech corpus: audio file {path.name} has {speech.shape[1]} channels, "
                         "expected mono")
    if speech.size == 0:
        raise ValueError(f"speech corpus: audio file {path.name} holds no samples")
    return speech


def load_corpus(split=None, root=None):
    """The corpus as a `datasets.Dataset` with columns path, text, ..., plus `speech` (float32 samples).

    `split` is "train", "heldout" or None (everything). The audio is read in a `map`, as the
    book reads SUPERB; every file that cannot be read raises an error naming it. `speech`
    comes back as a NumPy array, the other columns as Python values.
    """
    from datasets import Dataset

    root = Path(root) if root is not None else corpus_dir()
    table = read_transcripts(root)
    if split is not None:
        if split not in set(table["split"]):
            raise ValueError(f"speech corpus: unknown split {split!r}; "
                             f"choose from {sorted(set(table['split']))}")
        table = table[table["split"] == split].reset_index(drop=True)

    def map_to_array(example):
        example["speech"] = read_speech(root / example["path"])
        return example

    corpus = Dataset.from_pandas(table, preserve_index=False).map(map_to_array)
    return corpus.with_format("numpy", columns=["speech"], output_all_columns=True)


def make_vocab(texts):
    """A character vocabulary for CTC: blank (<pad>), the other specials, "|" between words, letters."""
    chars = sorted({c for text in texts for c in text if c != " "})
    tokens = ["<pad>", "<s>", "</s>", "<unk>", "|"] + chars
    return {token: i for i, token in enumerate(tokens)}


def make_processor(vocab, directory):
    """A `Wav2Vec2Processor`: character CTC tokenizer (vocab.json written to `directory`) + feature extractor."""
    from transformers import (Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor,
                              Wav2Vec2Processor)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.json"
    vocab_file.write_text(json.dumps(vocab, indent=1) + "\n")
    tokenizer = Wav2Vec2CTCTokenizer(str(vocab_file), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|")
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLING_RATE,
                                        padding_value=0.0, do_normalize=True,
                                        return_attention_mask=True)
    return Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer)


def small_config(processor, **overrides):
    """A `Wav2Vec2Config` a few hundred times smaller than wav2vec2-base, same frame rate (20 ms)."""
    from transformers import Wav2Vec2Config

    settings = dict(
        conv_dim=(16, 16, 16, 32, 32, 32, 64), conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True,
        hidden_size=128, num_hidden_layers=3, num_attention_heads=4, intermediate_size=256,
        num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=8,
        hidden_dropout=0.05, attention_dropout=0.05, activation_dropout=0.0,
        feat_proj_dropout=0.05, final_dropout=0.05, layerdrop=0.0,
        mask_time_prob=0.05, mask_time_length=5,
        ctc_loss_reduction="mean", ctc_zero_infinity=True,
        vocab_size=len(processor.tokenizer), pad_token_id=processor.tokenizer.pad_token_id,
    )
    settings.update(overrides)
    return Wav2Vec2Config(**settings)


def frames_per_second(config, sampling_rate=SAMPLING_RATE):
    """Output frames per second of audio: the sampling rate over the product of the conv strides."""
    return sampling_rate / math.prod(config.conv_stride)


def receptive_field(config):
    """How many samples one output frame of the feature encoder sees."""
    field, jump = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def num_frames(config, num_samples):
    """How many frames the feature encoder makes of `num_samples` samples (each conv: floor((L-k)/s)+1)."""
    if num_samples < 1:
        raise ValueError(f"num_frames: need at least one sample, got {num_samples}")
    length = num_samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        if length < kernel:
            return 0
        length = (length - kernel) // stride + 1
    return length


def augment(speech, rng):
    """A randomly perturbed copy of `speech`: speed (resampling, so pitch too), loudness, noise."""
    from scipy.signal import resample_poly

    factor = rng.choice([0.9, 0.95, 1.0, 1.05, 1.1])
    if factor != 1.0:
        speech = resample_poly(speech, 100, round(100 * factor))
    speech = speech * rng.uniform(0.3, 1.0)
    noise = rng.normal(0.0, rng.uniform(0.0, 0.01), size=len(speech))
    return (speech + noise).astype(np.float32)


@dataclass
class CTCCollator:
    """Turns a list of corpus examples into a padded batch (input_values, attention_mask, labels).

    Labels are padded with -100, which the CTC loss ignores. With `augment=True` each
    waveform is perturbed first (see `augment`), drawing from a generator seeded with `seed`.
    """

    processor: object
    augment: bool = False
    seed: int = 0

    def __post_init__(self):
        self._rng = np.random.default_rng(self.seed)

    def __call__(self, examples):
        speech = [np.asarray(e["speech"], dtype=np.float32) for e in examples]
        if self.augment:
            speech = [augment(s, self._rng) for s in speech]
        batch = self.processor.feature_extractor(speech, sampling_rate=SAMPLING_RATE,
                                                 padding=True, return_tensors="pt")
        labels = self.processor.tokenizer([e["text"] for e in examples], padding=True,
                                          return_tensors="pt")
        batch["labels"] = labels["input_ids"].masked_fill(labels["attention_mask"] == 0, -100)
        return dict(batch)


def greedy_ctc_steps(logits, tokenizer):
    """Greedy CTC decoding spelled out: argmax per frame, collapse repeats, drop blanks, join.

    `logits` is a (frames x vocabulary) array or tensor. Returns a dict with the token of every
    frame ("frames"), the tokens after merging repeats ("collapsed"), after dropping the blank
    ("no_blanks") and the text, "|" turned into a space ("text", exactly what the tokenizer's
    `decode` and hence the ASR pipeline return).
    """
    logits = torch.as_tensor(logits)
    if logits.ndim != 2:
        raise ValueError(f"greedy_ctc_steps: need (frames x vocabulary) logits, got shape "
                         f"{tuple(logits.shape)}")
    if logits.shape[1] != len(tokenizer):
        raise ValueError(f"greedy_ctc_steps: logits have {logits.shape[1]} classes but the "
                         f"tokenizer has {len(tokenizer)} tokens")
    ids = logits.argmax(dim=-1).tolist()
    frames = tokenizer.convert_ids_to_tokens(ids)
    collapsed = [token for token, _ in groupby(frames)]
    blank, delimiter = tokenizer.pad_token, tokenizer.word_delimiter_token
    no_blanks = [token for token in collapsed if token != blank]
    text = "".join(" " if t == delimiter else t for t in no_blanks).strip()
    return {"frames": frames, "collapsed": collapsed, "no_blanks": no_blanks, "text": text}


def print_ctc_steps(steps):
    """Print greedy CTC's four steps (`greedy_ctc_steps`' dict), the blank as · and the delimiter as _."""
    print(f"1. argmax of each of the {len(steps['frames'])} frames:\n{frame_string(steps['frames'])}")
    print(f"2. repeats merged ({len(steps['collapsed'])} tokens):\n{frame_string(steps['collapsed'])}")
    print(f"3. blanks dropped ({len(steps['no_blanks'])} tokens):\n{frame_string(steps['no_blanks'])}")
    print(f"4. text:\n{steps['text']}")


def ctc_log_probs(asr, wave):
    """Per-frame log-probabilities (frames x vocabulary, float64) of a CTC pipeline's model for one
    waveform: the pipeline's feature extractor, then its model, then a log-softmax, without decoding."""
    inputs = asr.feature_extractor(wave, sampling_rate=SAMPLING_RATE, return_tensors="pt")
    with torch.no_grad():
        return asr.model(**inputs).logits[0].log_softmax(-1).double()


def print_mask(mask):
    """Print a time mask (`_compute_mask_indices`' (1, frames) booleans, or one row of them): how many
    frames it masks, then one character a frame, # masked and . kept."""
    row = np.asarray(mask).reshape(-1)
    print(f"{row.size} frames, {int(row.sum())} masked ({row.mean():.0%}):")
    print("".join("#" if m else "." for m in row))


def frame_string(tokens, blank="<pad>", delimiter="|"):
    """Per-frame CTC tokens as one line of text, one character a frame: the blank as "·", the
    word delimiter as "_"."""
    return "".join({blank: "·", delimiter: "_"}.get(t, t) for t in tokens)


def ctc_segments(frames, blank="<pad>"):
    """Runs of one non-blank token in the per-frame tokens: a list of (token, first frame, last frame + 1)."""
    segments, start = [], 0
    for token, run in groupby(frames):
        length = len(list(run))
        if token != blank:
            segments.append((token, start, start + length))
        start += length
    return segments


def ctc_words(frames, blank="<pad>", delimiter="|"):
    """The words of per-frame CTC tokens with their frames: a list of (word, first frame, last frame + 1).

    A word runs from the first frame of its first letter to the last frame of its last letter;
    words are cut at the delimiter token (blanks inside a word, as between the two L's of
    "HELLO", do not cut it).
    """
    words, letters = [], []
    for token, first, last in ctc_segments(frames, blank) + [(delimiter, None, None)]:
        if token == delimiter:
            if letters:
                words.append(("".join(t for t, _, _ in letters), letters[0][1], letters[-1][2]))
            letters = []
        else:
            letters.append((token, first, last))
    return words


def plot_ctc_alignment(speech, frames, *, frame_seconds=0.02, sampling_rate=SAMPLING_RATE,
                       blank="<pad>", delimiter="|", window=None, title=None, save=None):
    """The log-mel spectrogram with greedy CTC's frame-by-frame output under it.

    `frames` is the per-frame token list of `greedy_ctc_steps`. The strip under the spectrogram
    has one cell per frame: a letter's frames in orange (neighbouring letters in two shades) with
    the letter written once, on one row, over its run; the word delimiter "|" (the gap between words) in dark blue; blank frames in
    light grey. Each whole word (`ctc_words`) is marked by a bracket above the spectrogram and
    named over it, so the spectrogram keeps its one colour scale (its colour bar, in dB). `window`, a (start, stop) pair in seconds, zooms in; a window outside the utterance is
    an error.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from .plotting import _finish, log_mel_spectrogram, mel_bin_hertz

    speech = np.asarray(speech, dtype=np.float32)
    duration = len(speech) / sampling_rate
    start, stop = (0.0, duration) if window is None else window
    if not 0 <= start < stop <= duration + 1e-9:
        raise ValueError(f"plot_ctc_alignment: window {window} is not inside the utterance (0 to {duration:.2f} s)")
    log_mel = log_mel_spectrogram(speech, sampling_rate)
    width = min(16.0, max(8.0, 6.5 * (stop - start)))
    fig, (ax, strip) = plt.subplots(2, 1, figsize=(width, 4.4), sharex=True,
                                    gridspec_kw={"height_ratios": [5, 1], "hspace": 0.05})
    image = ax.imshow(log_mel, origin="lower", aspect="auto", cmap="magma",
                      extent=[0, duration, 0, log_mel.shape[0]])
    fig.colorbar(image, ax=[ax, strip], pad=0.01, fraction=0.025, label="power (dB)")
    colours = {"blank": "#d9d9d9", "gap": "#1f3b73", "letter": ("#f28e2b", "#fdbf6f")}
    for i, token in enumerate(frames):
        if token == blank or token == delimiter:
            strip.axvspan(i * frame_seconds, (i + 1) * frame_seconds, lw=0,
                          color=colours["blank" if token == blank else "gap"])
    letters = [seg for seg in ctc_segments(frames, blank) if seg[0] != delimiter]
    for k, (token, first, last) in enumerate(letters):  # neighbouring letters in two shades
        t0, t1 = first * frame_seconds, last * frame_seconds
        strip.axvspan(t0, t1, color=colours["letter"][k % 2], lw=0)
        if start <= (t0 + t1) / 2 <= stop:
            strip.text((t0 + t1) / 2, 0.5, token, ha="center", va="center", fontsize=9, fontweight="bold")
    for k, (word, first, last) in enumerate(ctc_words(frames, blank, delimiter)):
        t0, t1 = first * frame_seconds, last * frame_seconds
        if t1 <= start or t0 >= stop:
            continue
        bracket = ax.get_xaxis_transform()  # x in seconds, y in axes units: just above the spectrogram
        left, right = max(t0, start), min(t1, stop)  # a word cut by the window keeps an open end
        ax.plot([left, left, right, right], [1.01 if t0 >= start else 1.04, 1.04, 1.04, 1.01 if t1 <= stop else 1.04],
                color="tab:cyan", lw=1.5,
                transform=bracket, clip_on=False)
        ax.text((max(t0, start) + min(t1, stop)) / 2, 1.05, word, transform=bracket,
                ha="center", va="bottom", fontsize=9, fontweight="bold", clip_on=False)
    bins = np.arange(0, log_mel.shape[0] + 1, 20)  # the same frequency axis as plot_waveform_spectrogram
    ax.set(ylabel="frequency (Hz, mel-spaced)", xlim=(start, stop), yticks=bins,
           yticklabels=[f"{hz:,.0f}" for hz in mel_bin_hertz(bins, log_mel.shape[0], sampling_rate)])
    strip.set(xlabel="time (s)", yticks=[], xlim=(start, stop))
    strip.legend(handles=[Line2D([], [], color="tab:cyan", lw=1.5, label="a word's frames, first to last letter (above)"),
                          Patch(color=colours["letter"][0], label="letter (neighbours in two shades)"),
                          Patch(color=colours["gap"], label="word gap (|)"),
                          Patch(color=colours["blank"], label="blank")],
                 loc="upper center", bbox_to_anchor=(0.5, -0.9), ncol=4, fontsize=8, frameon=False)
    ax.set_title(title or "greedy CTC frame by frame: whole words bracketed above the spectrogram, "
                 "every 20 ms frame's output below", pad=24, fontsize=10)
    return _finish(fig, save)


@torch.no_grad()
def transcribe(model, processor, speeches, batch_size=16):
    """Greedy transcripts of a list of waveforms, batched (same decoding as the ASR pipeline).

    A batch pads the shorter waveforms, and the model emits frames for the padding too; each
    utterance is decoded from its own frames only, so batching does not change a transcript.
    """
    model.eval()
    texts = []
    for i in range(0, len(speeches), batch_size):
        chunk = [np.asarray(s, dtype=np.float32) for s in speeches[i:i + batch_size]]
        inputs = processor.feature_extractor(chunk, sampling_rate=SAMPLING_RATE, padding=True,
                                             return_tensors="pt")
        ids = model(**inputs).logits.argmax(dim=-1)
        texts.extend(processor.tokenizer.decode(row[:num_frames(model.config, len(wave))])
                     for row, wave in zip(ids, chunk))
    return texts


def pretraining_config(**overrides):
    """A small `Wav2Vec2Config` for `Wav2Vec2ForPreTraining`: the live model's shape (width 128, 3 layers), smaller codebooks.

    Masking as in the wav2vec 2.0 paper (spans of 10 frames, `mask_time_prob=0.65`: transformers'
    fraction, about half the frames masked), contrastive temperature 0.1 and diversity weight 0.1
    (arXiv:2006.11477, sections 3.2 and 4.2); 2 codebooks of 32 entries (base: 2 x 320) and 20
    negatives (base: 100), so that a short utterance has enough masked frames to draw them from.
    No dropout or layer drop, so that a forward pass draws random numbers only for the Gumbel noise.
    """
    from transformers import Wav2Vec2Config

    settings = dict(
        conv_dim=(16, 16, 16, 32, 32, 32, 64), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2), feat_extract_norm="layer", conv_bias=True,
        do_stable_layer_norm=True, hidden_size=128, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=256, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=8,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
        feat_quantizer_dropout=0.0, final_dropout=0.0, layerdrop=0.0,
        mask_time_prob=0.65, mask_time_length=10, num_codevector_groups=2,
        num_codevectors_per_group=32, codevector_dim=64, proj_codevector_dim=64, num_negatives=20,
        contrastive_logits_temperature=0.1, diversity_loss_weight=0.1,
    )
    settings.update(overrides)
    return Wav2Vec2Config(**settings)


def pretraining_losses(model, input_values, mask_time_indices, sampled_negative_indices):
    """wav2vec 2.0's self-supervised loss computed by hand from a `Wav2Vec2ForPreTraining`'s weights.

    `mask_time_indices` (batch x frames, bool) are the masked frames (transformers'
    `_compute_mask_indices`), `sampled_negative_indices` (batch x frames x K) the flat indices of
    the K distractors of every frame (`_sample_negative_indices`). Step by step:

    1. the feature encoder's frames z; the transformer reads them with the masked ones replaced by
       one learned vector, and its outputs c are projected (`project_hid`);
    2. each unmasked frame z is quantised: per codebook a linear map gives logits over the entries,
       one entry is picked (Gumbel softmax in training, argmax in evaluation), the picked entries
       are concatenated and projected (`project_q`): the targets q;
    3. for every masked frame, cosine similarity of c_t with its own q_t and with K distractors q
       from other masked frames of the same utterance, over the temperature kappa; a distractor
       identical to the target is left out;
    4. contrastive loss: cross-entropy of picking the true q_t, summed over masked frames;
    5. diversity loss: (G V - perplexity) / (G V) times the number of masked frames, where the
       perplexity is exp(entropy) of each codebook's average softmax over the masked frames, summed
       over codebooks; the loss is contrastive + alpha * diversity (paper, equations 2-4).

    Returns a dict of tensors: the steps' values ("codes": chosen entry per frame and codebook,
    "logits": (masked frames x (1 + K))) and "contrastive", "diversity", "perplexity", "loss".
    In training mode it draws the Gumbel noise exactly as `torch.nn.functional.gumbel_softmax`
    does, so with the same seed it reproduces the model's own sample.
    """
    config = model.config
    mask = torch.as_tensor(mask_time_indices, dtype=torch.bool)
    negatives = torch.as_tensor(sampled_negative_indices, dtype=torch.long)
    batch, length = input_values.shape[0], mask.shape[-1]
    frames = int(model._get_feat_extract_output_lengths(input_values.shape[-1]))
    if mask.shape != (batch, frames):
        raise ValueError(f"pretraining_losses: mask_time_indices has shape {tuple(mask.shape)}, "
                         f"the audio makes ({batch}, {frames}) frames")
    if negatives.shape != (batch, length, config.num_negatives):
        raise ValueError(f"pretraining_losses: sampled_negative_indices has shape "
                         f"{tuple(negatives.shape)}, expected ({batch}, {length}, {config.num_negatives})")
    if not mask.any():
        raise ValueError("pretraining_losses: no frame is masked, so there is nothing to predict")

    out = model.wav2vec2(input_values, mask_time_indices=mask)  # step 1
    c = model.project_hid(out.last_hidden_state)
    z = out.extract_features
    groups, entries = config.num_codevector_groups, config.num_codevectors_per_group
    code_logits = model.quantizer.weight_proj(z).view(batch, length, groups, entries)  # step 2
    if model.training:
        gumbel = -torch.empty_like(code_logits).exponential_().log()
        codes = ((code_logits + gumbel) / model.quantizer.temperature).argmax(-1)
        probs = code_logits.softmax(-1)  # the perplexity uses the noiseless softmax
    else:
        codes = code_logits.argmax(-1)
        probs = torch.nn.functional.one_hot(codes, entries).to(code_logits.dtype)
    codebooks = model.quantizer.codevectors.view(groups, entries, -1)
    picked = torch.stack([codebooks[g][codes[..., g]] for g in range(groups)], dim=-2)
    q = model.project_q(picked.flatten(-2))  # (batch, frames, proj dim)

    flat_q = q.reshape(batch * length, -1)  # step 3
    candidates = torch.cat([q[mask][:, None], flat_q[negatives[mask]]], dim=1)  # (masked, 1 + K, dim)
    logits = torch.cosine_similarity(c[mask][:, None], candidates, dim=-1)
    logits = logits / config.contrastive_logits_temperature
    same = (candidates[:, 1:] == candidates[:, :1]).all(-1)
    logits[:, 1:] = logits[:, 1:].masked_fill(same, float("-inf"))
    contrastive = -torch.log_softmax(logits, dim=-1)[:, 0].sum()  # step 4

    average = probs[mask].mean(0)  # step 5: (groups, entries)
    perplexity = torch.exp(-(torch.xlogy(average, average)).sum(-1)).sum()
    total = groups * entries
    diversity = (total - perplexity) / total * mask.sum()
    return {"z": z, "c": c, "codes": codes, "targets": q, "logits": logits,
            "contrastive": contrastive, "diversity": diversity, "perplexity": perplexity,
            "loss": contrastive + config.diversity_loss_weight * diversity}


_ABBREVIATIONS = {"MR": "MISTER", "MRS": "MISSUS", "DR": "DOCTOR", "ST": "SAINT"}


def pretraining_diagnostics(losses, num_negatives):
    """What `pretraining_losses` found, in three lines: the first frames' codes, the distractors lost
    to copies of their target, and the contrastive loss per masked frame beside its chance floor.

    A distractor whose quantised target equals the frame's own is dropped (logit -inf), so a frame
    chooses among K_kept + 1 candidates; guessing then costs ln(K_kept + 1) on average. Returns the
    lines as a list of strings.
    """
    masked = losses["logits"].shape[0]
    kept = torch.isfinite(losses["logits"][:, 1:]).sum(1)  # distractors left once copies of the target are dropped
    return [f"codes of the first 8 frames (codebook 1, codebook 2): {losses['codes'][0, :8].tolist()}",
            f"{(kept < num_negatives).sum().item()} of {masked} masked frames lost at least one distractor identical "
            f"to their target, {(num_negatives - kept).sum().item()} distractors in all",
            f"per masked frame the contrastive loss is {losses['contrastive'].item() / masked:.2f}; guessing among the "
            f"candidates left gives mean ln(K_kept + 1) = {torch.log(kept + 1.0).mean().item():.2f}, among all "
            f"{1 + num_negatives} ln {1 + num_negatives} = {math.log(1 + num_negatives):.2f}"]


def normalise_text(text):
    """A sentence as a transcript: upper case, letters, apostrophes inside words and single spaces.

    "Mr." and "Mrs." are spelled out as they are spoken (MISTER, MISSUS), hyphens and dashes become
    spaces, other punctuation goes. Returns None for a sentence a reader could not say from its
    letters alone (digits, or any other character outside `ALPHABET`).
    """
    text = text.upper().replace("\u2019", "'").replace("_", "")
    text = re.sub(r"\b(MRS?|DR|ST)\.", lambda m: _ABBREVIATIONS[m.group(1)], text)
    text = re.sub(r"[-\u2014]+", " ", text)
    text = re.sub(r"[.,;:!?\"()*]", " ", text)
    words = [w.strip("'") for w in text.split()]
    text = " ".join(w for w in words if w)
    if not text or any(c not in ALPHABET for c in text):
        return None
    return text


def book_sentences(path=None, block=25, fractions=(0.8, 0.1, 0.1), seed=0, min_words=4,
                   max_words=12):
    """Sentences of a book split into train / validation / test by source passage.

    The book's paragraphs are cut into blocks of `block` consecutive paragraphs, and whole blocks
    go to one split (a seeded shuffle, in the proportions `fractions`), so that a test sentence
    never shares a passage, and rarely a name or a phrase, with a training one. Returns a dict
    split -> list of normalised sentences of `min_words` to `max_words` words (`normalise_text`).
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"book_sentences: fractions {fractions} must be three positive shares summing to 1")
    path = Path(path) if path is not None else data_path("pride_and_prejudice.txt")
    paragraphs = [" ".join(p.split()) for p in path.read_text(encoding="utf-8").split("\n\n")]
    paragraphs = [p for p in paragraphs if p and not p.upper().startswith("CHAPTER")]
    blocks = [paragraphs[i:i + block] for i in range(0, len(paragraphs), block)]
    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    cut1 = round(fractions[0] * len(blocks))
    cut2 = cut1 + max(1, round(fractions[1] * len(blocks)))
    names = {i: ("train" if k < cut1 else "validation" if k < cut2 else "test")
             for k, i in enumerate(order)}
    splits = {"train": [], "validation": [], "test": []}
    for i, paragraphs_of_block in enumerate(blocks):
        for paragraph in paragraphs_of_block:
            for raw in re.split(r"(?<=[.!?;:])\s+", re.sub(r"\b(Mrs?|Dr|St)\.", r"\1", paragraph)):
                text = normalise_text(raw)
                if text and min_words <= len(text.split()) <= max_words:
                    splits[names[i]].append(text)
    for name in splits:  # a sentence repeated across passages ("Oh!") stays in its first split
        seen = {t for other in ("train", "validation", "test") if other != name
                for t in splits[other]} if name == "test" else set()
        splits[name] = list(dict.fromkeys(t for t in splits[name] if t not in seen))
    return splits


def book_sample(split, n, seed=0):
    """The `n` book sentences of `split` that `scripts/make_speech_corpus.py` speaks for that split.

    The script draws them with `random.Random(seed + 1).sample` from :func:`book_sentences` (all of
    them when `n` is at least their number), so the texts of a split that is synthesised on the fly
    and never shipped (the validation split of `scripts/train_speech.py`) can be read without
    espeak-ng. Returns a list of sentences in the order they are spoken.
    """
    sentences = book_sentences(seed=seed)
    if split not in sentences:
        raise ValueError(f"book_sample: unknown split {split!r}; choose from {sorted(sentences)}")
    book = sentences[split]
    return list(book) if n >= len(book) else random.Random(seed + 1).sample(book, n)


def sentence_statistics(splits, known_words):
    """Length and out-of-vocabulary share of the sentences of each split.

    `splits` maps a name to a list of sentences, `known_words` is the set of words a model could
    have met in training. Returns a DataFrame, one row per split: sentences, mean words and
    characters per sentence, and the share of running words not in `known_words`.
    """
    rows = {}
    for name, texts in splits.items():
        if not len(texts):
            raise ValueError(f"sentence_statistics: split {name!r} holds no sentence")
        words = [w for t in texts for w in t.split()]
        rows[name] = {"sentences": len(texts), "words": np.mean([len(t.split()) for t in texts]),
                      "characters": np.mean([len(t) for t in texts]),
                      "unknown words": np.mean([w not in known_words for w in words])}
    return pd.DataFrame(rows).T


def print_test_split(table, known_words, vocab):
    """Print what a test split's transcripts table holds: utterances by kind, voices and speeds; the share
    of its book sentences' words that are not in `known_words` (the training passages' words); and the
    characters of its transcripts that `vocab` (a recogniser's tokens) lacks."""
    words = [w for t in table[table.kind == "book"].text for w in t.split()]
    print(f"{len(table)} test utterances: {table.kind.value_counts().to_dict()}; "
          f"{table.voice.nunique()} voices, speeds {sorted(set(table.speed))}")
    print(f"{np.mean([w not in known_words for w in words]):.0%} of the test book sentences' words never "
          f"occur in the training passages; {sorted(set(''.join(table.text)) - set(vocab) - {' '})} "
          "are letters the grammar never used")


def voice_clusters(voices):
    """Groups of espeak-ng voice names that share an accent or a variant, directly or through others.

    A name is `language+variant`; two voices with the same variant (`en-us-nyc+m8`, `en-gb-x-gbclan+m8`)
    or the same language (`en-gb-scotland+adam`, `en-gb-scotland+paul`) are not independent draws,
    so resampling for an interval should keep such voices together. Returns a dict name -> cluster
    label (the alphabetically first name of its cluster).
    """
    voices = sorted(set(voices))
    parent = {v: v for v in voices}

    def root(v):
        while parent[v] != v:
            v = parent[v]
        return v

    for a in voices:
        for b in voices:
            if a < b and set(a.split("+", 1)) & set(b.split("+", 1)):  # a shared accent or variant
                parent[max(root(a), root(b))] = min(root(a), root(b))
    return {v: root(v) for v in voices}


def score_utterances(asr, dataset, normalise=False):
    """Transcribe every utterance of `dataset` with an ASR pipeline and count its errors with jiwer.

    `normalise=True` writes each transcript the way the references are written (`normalise_text`:
    upper case, no punctuation, "Mr." as MISTER), for recognisers such as Whisper that write
    cased, punctuated text; a transcript it cannot say in letters is kept upper-cased.

    One utterance at a time: with `batch_size` > 1 the pipeline pads the shorter waveforms and
    decodes the padding's frames too, which adds letters to their ends.

    Returns a DataFrame: the dataset's columns (without the audio) plus `heard`, the character and
    word edit counts (`char_errors`, `word_errors`: substitutions + deletions + insertions) and
    the reference lengths (`chars`, `words`), from which `error_rates` pools rates.
    """
    heard = [asr(wave)["text"] for wave in dataset["speech"]]
    if normalise:
        heard = [normalise_text(h) or h.upper().strip() for h in heard]
    return score_transcripts(dataset.remove_columns("speech").to_pandas(), heard)


def score_transcripts(table, heard):
    """Count the character and word errors of the transcripts `heard`, one per row of `table`.

    `table` needs a `text` column (the references); `heard` is a list of strings of the same length
    (a recogniser's output, or a rule's guesses). Returns what `score_utterances` returns: the
    table's columns plus `heard`, `char_errors`, `word_errors`, `chars` and `words`.
    """
    import jiwer

    if "text" not in table.columns:
        raise ValueError("score_transcripts: the table lacks the column 'text' (the references)")
    heard = list(heard)
    if len(heard) != len(table):
        raise ValueError(f"score_transcripts: {len(heard)} transcripts for {len(table)} references")
    table = table.reset_index(drop=True).assign(heard=heard)
    rows = []
    for ref, hyp in zip(table["text"], heard):
        words = jiwer.process_words(ref, hyp or "")
        chars = jiwer.process_characters(ref, hyp or "")
        rows.append({"word_errors": words.substitutions + words.deletions + words.insertions,
                     "words": len(ref.split()),
                     "char_errors": chars.substitutions + chars.deletions + chars.insertions,
                     "chars": len(ref)})
    return pd.concat([table, pd.DataFrame(rows)], axis=1)


def error_rates(scores, by=None, n_boot=1000, seed=0, level=0.95, groups=None):
    """CER and WER pooled over utterances (errors / reference length), with bootstrap intervals.

    `scores` is a `score_utterances` table; `by` a column name (or None: one row for all). Each
    row's interval is :func:`utils.evaluation.bootstrap` of the errors weighted by the reference
    lengths: `n_boot` resamples (seeded with `seed`, the same draws for CER and WER) of the row's
    utterances with replacement, and the central `level` share of the pooled rates. It covers the
    sampling of the test utterances, for this one fixed recogniser, not what retraining would give.

    `groups`, a column name such as "voice", resamples whole groups of utterances instead (the
    utterances of one voice succeed or fail together, so they are worth less than as many
    independent ones); it cannot be `by` itself. A row with a single utterance (or a single group)
    has nothing to resample: its bounds are NaN. Returns a DataFrame with columns utterances, cer,
    cer_low, cer_high, wer, wer_low, wer_high.
    """
    from .evaluation import bootstrap

    missing = {"char_errors", "chars", "word_errors", "words"} - set(scores.columns)
    if missing:
        raise ValueError(f"error_rates: scores lack the column(s) {sorted(missing)}; "
                         "make them with score_utterances")
    if by is not None and by not in scores.columns:
        raise ValueError(f"error_rates: no column {by!r} to group by")
    if groups is not None and groups not in scores.columns:
        raise ValueError(f"error_rates: no column {groups!r} to resample groups by")
    if groups is not None and groups == by:
        raise ValueError(f"error_rates: groups={groups!r} is also the `by` column; each row would hold "
                         "a single group, with nothing to resample")
    parts = [("all", scores)] if by is None else list(scores.groupby(by))
    rows = []
    for name, part in parts:
        row = {by or "split": name, "utterances": len(part)}
        labels = None if groups is None else part[groups].to_numpy()
        units = len(part) if labels is None else len(pd.unique(labels))
        for rate, errors, length in [("cer", "char_errors", "chars"), ("wer", "word_errors", "words")]:
            e, n = part[errors].to_numpy(), part[length].to_numpy()
            row[rate] = e.sum() / n.sum()
            if units < 2:
                row[f"{rate}_low"] = row[f"{rate}_high"] = float("nan")
                continue
            estimate = bootstrap(e, weights=n, groups=labels, confidence=level, n_boot=n_boot, seed=seed)
            row[f"{rate}_low"], row[f"{rate}_high"] = estimate.low, estimate.high
        rows.append(row)
    return pd.DataFrame(rows).set_index(by or "split")


def constant_baseline(texts, candidates=5, max_repeats=20):
    """The best single transcript for every utterance: a rule that listens to nothing at all.

    Among the `candidates` most frequent words of the training text `texts`, each repeated 1 to
    `max_repeats` times, the string of the lowest pooled CER on `texts` themselves (a few frequent
    letters in about the right number beat writing nothing, whose CER is 1). Returns the string.
    """
    import collections

    from rapidfuzz.distance import Levenshtein  # jiwer's own edit distance: the same counts, faster in bulk

    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("constant_baseline: need at least one non-empty training text")
    words = [w for w, _ in collections.Counter(w for t in texts for w in t.split()).most_common(candidates)]
    guesses = [" ".join([w] * k) for w in words for k in range(1, max_repeats + 1)]
    return min(guesses, key=lambda guess: sum(Levenshtein.distance(t, guess) for t in texts))


def rule_rates(train, test, texts, by="kind", groups="voice"):
    """Error rates of three recognisers that listen to nothing, on the utterances of `test`.

    `length_baseline` (the training sentence of `train` whose duration x speed is nearest),
    `constant_baseline(texts)` written for every utterance, and an empty transcript (CER = WER = 1
    exactly: a WER above 1 is worse than writing nothing). `train` and `test` are transcript tables
    (`read_transcripts`, or a corpus's `to_pandas()`); `texts` the training text the constant is
    chosen on. Returns {name: `error_rates(..., by, groups=groups)`}, ready for `pd.concat`.
    """
    constant = constant_baseline(texts)
    guesses = {"length rule": length_baseline(train, test),
               f"constant ({constant.split()[0]} x {len(constant.split())})": [constant] * len(test),
               "empty transcript": [""] * len(test)}
    return {name: error_rates(score_transcripts(test, heard), by, groups=groups) for name, heard in guesses.items()}


def length_baseline(train, test):
    """The simplest listener: for each test utterance, the training sentence of the nearest length.

    An utterance's seconds times its speed (words a minute) estimates how many words it holds, with
    no use of what it sounds like. `train` and `test` are tables with columns text, seconds and speed
    (`read_transcripts`, or a corpus's `to_pandas()`). Returns the list of guessed transcripts, one
    per row of `test`: a recogniser that beats it is listening to more than the length.
    """
    for name, table in [("train", train), ("test", test)]:
        missing = {"text", "seconds", "speed"} - set(table.columns)
        if missing:
            raise ValueError(f"length_baseline: {name} lacks the column(s) {sorted(missing)}")
    known = np.asarray(train["seconds"], float) * np.asarray(train["speed"], float)
    texts = list(train["text"])
    wanted = np.asarray(test["seconds"], float) * np.asarray(test["speed"], float)
    return [texts[int(np.abs(known - w).argmin())] for w in wanted]


def near_misses(scores, max_distance=2):
    """How many of the wrong words were near misses: a letter or two off the right word.

    `scores` is a `score_utterances` table. jiwer aligns each reference with what was heard; every
    substituted word pair is a wrong word, and it is a near miss when the character edit distance
    (Levenshtein: substitutions, deletions, insertions) between the two words is at most
    `max_distance`. Deleted and inserted words are wrong words too but have no partner, so they
    count as not near. Returns a dict: `wrong` (substitutions + deletions + insertions, as in WER),
    `substituted`, `near` and `share` (near / wrong).
    """
    import jiwer

    missing = {"text", "heard"} - set(scores.columns)
    if missing:
        raise ValueError(f"near_misses: scores lack the column(s) {sorted(missing)}; make them with score_utterances")
    if not isinstance(max_distance, int) or max_distance < 0:
        raise ValueError(f"near_misses: max_distance must be a non-negative int, got {max_distance!r}")
    wrong = substituted = near = 0
    for ref, hyp in zip(scores["text"], scores["heard"]):
        out = jiwer.process_words(ref, hyp or "")
        wrong += out.substitutions + out.deletions + out.insertions
        r, h = out.references[0], out.hypotheses[0]
        for chunk in out.alignments[0]:
            if chunk.type != "substitute":
                continue
            for a, b in zip(r[chunk.ref_start_idx:chunk.ref_end_idx], h[chunk.hyp_start_idx:chunk.hyp_end_idx]):
                substituted += 1
                c = jiwer.process_characters(a, b)
                near += c.substitutions + c.deletions + c.insertions <= max_distance
    return {"wrong": wrong, "substituted": substituted, "near": near, "share": near / wrong if wrong else float("nan")}


def write_arpa(sentences, path, order=3, discount=0.7):
    """Write a word n-gram language model of `sentences` to `path` in the ARPA format, for
    kenlm and pyctcdecode's beam search.

    Interpolated absolute discounting (Ney, Essen & Kneser 1994): P(w | h) = max(c(h w) - D, 0) / c(h)
    + lambda(h) P(w | h'), where h' drops the oldest word of h and lambda(h) = D N(h) / c(h), N(h) the
    number of distinct words seen after h. The unigrams are relative frequencies with one extra count
    for <unk>. In the ARPA back-off form the weight of a context is then exactly lambda(h): every
    context's probabilities sum to 1. Returns the path.
    """
    if not 1 <= order <= 5:
        raise ValueError(f"write_arpa: order must be 1 to 5, got {order}")
    if not 0 < discount < 1:
        raise ValueError(f"write_arpa: discount must lie in (0, 1), got {discount}")
    from collections import Counter, defaultdict

    sentences = [s for s in sentences if s.split()]
    if not sentences:
        raise ValueError("write_arpa: no words in sentences")
    counts = [Counter() for _ in range(order + 1)]  # counts[n][ngram tuple]
    for sentence in sentences:
        words = ["<s>"] + sentence.split() + ["</s>"]
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                gram = tuple(words[i:i + n])
                if gram != ("<s>",):
                    counts[n][gram] += 1
    total = sum(counts[1].values()) + 1
    prob = {1: {gram: c / total for gram, c in counts[1].items()}}
    prob[1][("<unk>",)] = 1 / total
    backoff = {}
    for n in range(2, order + 1):
        history_count, followers = Counter(), defaultdict(int)
        for gram, c in counts[n].items():
            history_count[gram[:-1]] += c
            followers[gram[:-1]] += 1
        for history, c in history_count.items():
            backoff[history] = discount * followers[history] / c
        prob[n] = {}
        for gram, c in counts[n].items():
            lower = _arpa_prob(prob, backoff, gram[1:])
            prob[n][gram] = (c - discount) / history_count[gram[:-1]] + backoff[gram[:-1]] * lower
    lines = ["\\data\\"] + [f"ngram {n}={len(prob[n]) + (n == 1)}" for n in range(1, order + 1)] + [""]
    for n in range(1, order + 1):
        lines.append(f"\\{n}-grams:")
        grams = sorted(prob[n].items()) + ([(("<s>",), None)] if n == 1 else [])
        for gram, p in grams:
            line = f"{-99.0 if p is None else math.log10(p):.6f}\t{' '.join(gram)}"
            if n < order and gram in backoff:
                line += f"\t{math.log10(backoff[gram]):.6f}"
            lines.append(line)
        lines.append("")
    lines.append("\\end\\")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


def _arpa_prob(prob, backoff, gram):
    """P(gram[-1] | gram[:-1]) of the back-off model being built (unknown words get <unk>'s)."""
    if len(gram) == 1:
        return prob[1].get(gram, prob[1][("<unk>",)])
    if gram in prob.get(len(gram), {}):
        return prob[len(gram)][gram]
    return backoff.get(gram[:-1], 1.0) * _arpa_prob(prob, backoff, gram[1:])


def ctc_forward(log_probs, target, blank=0, return_table=False):
    """-log p(target | frames) under CTC, by the forward (alpha) recursion in log space.

    `log_probs` is a (frames x vocabulary) tensor of per-frame log-probabilities (log_softmax of
    the logits), `target` a sequence of token ids without blanks. The target is interleaved with
    blanks, l' = (blank, y1, blank, y2, ..., yU, blank), and alpha[t, s] is the log-probability of
    all paths through frame t that have emitted l'[:s+1]: a path may stay on a symbol, step to the
    next one, or skip a blank between two different labels (Graves et al., 2006, section 4.1). The
    answer sums the two ends that finish the target (its last label, or the blank after it).
    Computed one frame at a time, for reading, not speed; `torch.nn.functional.ctc_loss` with
    reduction="none" gives the same number. With `return_table=True` it returns the whole table
    alpha instead, (frames x len(l')), frame t's own log-probability included; run on the frames and
    the target both reversed, and flipped back, the same table is the backward (beta) recursion.
    """
    log_probs = torch.as_tensor(log_probs, dtype=torch.float64)
    target = [int(t) for t in target]
    if log_probs.ndim != 2:
        raise ValueError(f"ctc_forward: need (frames x vocabulary) log-probabilities, got shape {tuple(log_probs.shape)}")
    if blank in target:
        raise ValueError(f"ctc_forward: the target holds the blank id {blank}; give the labels only")
    if any(not 0 <= t < log_probs.shape[1] for t in target):
        raise ValueError(f"ctc_forward: a target id is outside the vocabulary of {log_probs.shape[1]}")
    extended = [blank]
    for label in target:
        extended += [label, blank]
    S, T = len(extended), log_probs.shape[0]
    minus_inf = torch.tensor(-math.inf, dtype=torch.float64)
    alpha = torch.full((S,), -math.inf, dtype=torch.float64)
    alpha[0] = log_probs[0, blank]
    if S > 1:
        alpha[1] = log_probs[0, extended[1]]
    allowed = torch.tensor([s >= 2 and extended[s] != blank and extended[s] != extended[s - 2]
                            for s in range(S)])  # where a path may skip the blank before l'[s]
    table = [alpha]
    for t in range(1, T):
        stay = alpha
        step = torch.cat([minus_inf.view(1), alpha[:-1]])
        skip = torch.where(allowed, torch.cat([minus_inf.repeat(2), alpha[:-2]]), minus_inf)
        alpha = torch.logsumexp(torch.stack([stay, step, skip]), dim=0) + log_probs[t, extended]
        table.append(alpha)
    if return_table:
        return torch.stack(table)
    return -torch.logsumexp(alpha[-2:], dim=0) if S > 1 else -alpha[-1]


def blank_positions(frames, blank="<pad>", delimiter="|"):
    """Where greedy CTC's blank frames fall: inside a word (between its first and last letter)
    or outside every word (between words, before the first or after the last).

    `frames` is the per-frame token list of `greedy_ctc_steps`; words as in `ctc_words`.
    Returns a dict with the counts `inside` and `outside` and the share `inside_share`.
    """
    words = ctc_words(frames, blank, delimiter)
    inside = sum(1 for i, token in enumerate(frames)
                 if token == blank and any(first <= i < last for _, first, last in words))
    total = sum(token == blank for token in frames)
    return {"inside": inside, "outside": total - inside, "inside_share": inside / total if total else float("nan")}


def group_spread_test(scores, group="voice", n_perm=2000, seed=0):
    """Do the groups (voices) differ more than random groups of the same utterances would?

    The statistic is the standard deviation of the groups' pooled CERs. Under the null hypothesis
    that the group does not matter, any dealing of the utterances to groups of the same sizes is as
    likely as the real one (a permutation test), so the p-value is the share of `n_perm` random
    dealings whose spread is at least the observed one (counting the observed dealing itself).
    Meaningful when the sentences were dealt to the groups at random, as in the test split.
    Returns a dict: `observed`, `null_mean` (the spread random dealings give on average) and `p`.
    """
    missing = {group, "char_errors", "chars"} - set(scores.columns)
    if missing:
        raise ValueError(f"group_spread_test: scores lack the column(s) {sorted(missing)}")
    labels = pd.factorize(scores[group])[0]
    if labels.max() < 1:
        raise ValueError(f"group_spread_test: need at least 2 groups in {group!r}")
    errors, chars = scores["char_errors"].to_numpy(float), scores["chars"].to_numpy(float)

    def spread(ids):
        return np.std(np.bincount(ids, errors) / np.bincount(ids, chars), ddof=1)

    rng = np.random.default_rng(seed)
    observed = spread(labels)
    null = np.array([spread(rng.permutation(labels)) for _ in range(n_perm)])
    return {"observed": float(observed), "null_mean": float(null.mean()),
            "p": float((1 + (null >= observed - 1e-12).sum()) / (1 + n_perm))}


def voice_swap_table(utterances, rate="cer", n_boot=1000, seed=0):
    """The 2 x 2 table of `scripts/speech_voice_swap.py`'s record: sentences (rows) x voices (columns).

    `utterances` is the record's list of rows (or a DataFrame) with columns sentences, voices, voice and
    `score_utterances`' edit counts. Each cell is the pooled `rate` ("cer" or "wer") with its 95% interval from
    `error_rates(..., groups="voice")`: the cell's voices resampled, for this one fixed recogniser.
    Returns (table of "rate [low, high]" strings, DataFrame of the numbers with one row per cell).
    """
    scores = pd.DataFrame(utterances)
    cells = scores.assign(cell=list(zip(scores["sentences"], scores["voices"])))
    rates = error_rates(cells, "cell", n_boot=n_boot, seed=seed, groups="voice")
    rates.index = pd.MultiIndex.from_tuples(rates.index, names=["sentences", "voices"])
    text = rates.apply(lambda r: f"{r[rate]:.1%} [{r[rate + '_low']:.1%}, {r[rate + '_high']:.1%}]", axis=1)
    table = text.unstack("voices")
    table.index, table.columns = [f"{s} sentences" for s in table.index], [f"{v} voices" for v in table.columns]
    return table, rates


def compare_cer(scores_a, scores_b, groups="voice", n_boot=2000, seed=0, rate="cer"):
    """System A's pooled CER minus system B's on the same utterances, paired over `groups`.

    Both tables come from `score_utterances` on the same dataset (same texts, same order). Returns
    `utils.evaluation.paired_bootstrap`'s Comparison: the difference, a paired interval that
    resamples whole groups once for both systems, and the sign-flip test's p-value over the groups.
    `rate="wer"` compares the pooled word error rates instead.
    """
    from .evaluation import paired_bootstrap

    if rate not in ("cer", "wer"):
        raise ValueError(f"compare_cer: rate must be 'cer' or 'wer', got {rate!r}")
    if len(scores_a) != len(scores_b) or list(scores_a["text"]) != list(scores_b["text"]):
        raise ValueError("compare_cer: the two tables must score the same utterances in the same order")
    errors, length = ("char_errors", "chars") if rate == "cer" else ("word_errors", "words")
    return paired_bootstrap(scores_a[errors].to_numpy(float), scores_b[errors].to_numpy(float),
                            weights=scores_a[length].to_numpy(float),
                            groups=None if groups is None else scores_a[groups].to_numpy(),
                            n_boot=n_boot, seed=seed, percent=True)


def system_scores(path):
    """A record of several systems scored on one split (`scripts/speech_fresh_test.py`'s `scores.json`).

    Returns (record, {system: its `score_utterances`-like table}), the systems in the record's order,
    each table in the split's order, so that `compare_cer` can pair any two of them.
    """
    record = json.loads(Path(path).read_text())
    table = pd.DataFrame(record["utterances"])
    tables = {name: table[table["system"] == name].drop(columns="system").reset_index(drop=True)
              for name in record["systems"]}
    if len({tuple(t["path"]) for t in tables.values()}) != 1:
        raise ValueError(f"system_scores: the systems of {Path(path).name} did not score the same utterances")
    return record, tables


def voice_t(scores, percent=True):
    """Student's t interval over the voices' pooled CERs (`utils.evaluation.t_interval`): with few voices
    it pays for estimating their spread, where a bootstrap over the voices comes out too narrow."""
    from .evaluation import t_interval

    return t_interval(error_rates(scores, "voice").cer, percent=percent)


def pretraining_experiment(test_table, directory=None):
    """The shipped records of `scripts/pretrain_speech.py`, read and compared over fine-tuning seeds.

    `test_table` is the test split's transcripts (columns kind, voice, text). The records are one
    pre-training run and, for each arm ("pretrained", "scratch"), one fine-tuning run per seed:
    `tenth_{arm}.json` is seed 0, `tenth_{arm}_seed{k}.json` seed k. Returns a dict:

    - `pretraining`: the pre-training record; `runs`: {arm: {seed: record}}; `seeds`: the seeds
      both arms have;
    - `per_seed`: one row per seed and arm with the validation CER and the book and grammar test CERs;
    - `over_seeds`: {arm: `evaluation.over_seeds` of the book test CER};
    - `paired_t`: book test CER, pretrained minus scratch, paired by seed (same seed, same data order
      and augmentation), Student's t over seeds: what training again would change;
    - `welch_t`: the same difference unpaired (Welch's t), for a pairing that may buy nothing: a seed
      draws every weight of the scratch arm but only the new output layer of the pretrained one;
    - `voices_ahead`: per seed, on how many test voices the pretrained arm's book CER is the lower.
    """
    from .evaluation import over_seeds, paired_t, welch_t

    directory = Path(directory) if directory is not None else corpus_dir() / "pretraining"
    pre = json.loads((directory / "pretraining.json").read_text())
    runs = {}
    for arm in ("pretrained", "scratch"):
        files = {0: directory / f"tenth_{arm}.json"}
        files.update({int(f.stem.rsplit("seed", 1)[1]): f for f in directory.glob(f"tenth_{arm}_seed*.json")})
        runs[arm] = {seed: json.loads(f.read_text()) for seed, f in sorted(files.items()) if f.is_file()}
    seeds = sorted(set(runs["pretrained"]) & set(runs["scratch"]))
    if len(seeds) < 2:
        raise ValueError(f"pretraining_experiment: both arms need at least 2 seeds in {directory}, found {seeds}")
    book_voices = set(test_table.loc[test_table["kind"] == "book", "voice"])
    rows, ahead = [], {}
    for seed in seeds:
        voice_cer = {}
        for arm in runs:
            m = runs[arm][seed]
            voice_cer[arm] = pd.DataFrame(m["test"]["book"]["voice"]).set_index("voice")["cer"]
            if set(voice_cer[arm].index) != book_voices:
                raise ValueError(f"pretraining_experiment: {arm} seed {seed}'s test voices differ from test_table's")
            rows.append({"seed": seed, "arm": arm, "validation CER": m["validation"]["cer"],
                         "test CER (book)": m["test"]["book"]["all"][0]["cer"],
                         "test CER (grammar)": m["test"]["grammar"]["all"][0]["cer"],
                         "minutes": m["training_minutes"]})
        ahead[seed] = int((voice_cer["pretrained"] < voice_cer["scratch"]).sum())
    per_seed = pd.DataFrame(rows)
    book = per_seed.pivot(index="seed", columns="arm", values="test CER (book)")
    return {"pretraining": pre, "runs": runs, "seeds": seeds, "per_seed": per_seed,
            "over_seeds": {arm: over_seeds(book[arm], percent=True) for arm in runs},
            "paired_t": paired_t(book["pretrained"], book["scratch"], percent=True),
            "welch_t": welch_t(book["pretrained"], book["scratch"], percent=True),
            "voices_ahead": ahead, "test_voices": len(book_voices)}


def librispeech_sample():
    """The first utterance (sorted by id) of the LibriSpeech sample the transformers docs use
    (hf-internal-testing/librispeech_asr_dummy, clean, validation), read as the book reads SUPERB:
    the audio's bytes decoded with soundfile inside `map`. Needs the Hub or its cache. Returns a
    dict with id, text, speech (float32 array) and sampling_rate."""
    import io

    import datasets

    from .hub import CHECKPOINTS

    sample = CHECKPOINTS["librispeech_dummy"]
    data = datasets.load_dataset(sample.repo_id, sample.config, split=sample.split)
    data = data.sort("id").select(range(1)).cast_column("audio", datasets.Audio(decode=False))

    def map_to_array(example):
        audio = example["audio"]
        source = io.BytesIO(audio["bytes"]) if audio["bytes"] else audio["path"]
        example["speech"], example["sampling_rate"] = sf.read(source, dtype="float32")
        return example

    row = data.map(map_to_array)[0]
    return {"id": row["id"], "text": row["text"], "speech": np.asarray(row["speech"], dtype=np.float32),
            "sampling_rate": row["sampling_rate"]}
