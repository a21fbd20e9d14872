"""Synthesise the small speech corpus of notebook 06 with espeak-ng.

The corpus lives in ``data/speech/``:

* ``audio/*.flac``: one utterance per file, 16 kHz, mono, FLAC. Samples are rounded to
  10 bits (60 dB of dynamic range: the hiss is inaudible under espeak-ng's buzzy voices and
  far below the noise the training adds) and stored as 16-bit FLAC, which drops the six
  unused bits losslessly: files half the size of full 16-bit FLAC.
* ``transcripts.csv``: ``path`` (relative to ``data/speech``), ``text`` (upper case, the
  LibriSpeech convention), ``split`` (train or heldout), ``voice``, ``speed`` (words per
  minute), ``pitch`` (0-99), ``seconds``.

Sentences come from a small grammar built around the book's example sentence,
"MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES AND WE ARE GLAD TO WELCOME HIS GOSPEL".
The held-out split recombines the training vocabulary into sentences never heard in
training, spoken by voices never heard in training at speeds never used in training.
The book's sentence itself is the first held-out utterance.

The open-vocabulary test set (``--test-set``, written to ``data/speech/test/``) reads
sentences of *Pride and Prejudice* (``data/pride_and_prejudice.txt``) split by source passage
(``utils.speech.book_sentences``), spelled with the full alphabet A-Z, apostrophe and space,
plus sentences of the old grammar, all spoken by voices that neither the shipped recogniser nor
the training split ever heard. Voices are told apart by their sound, never by their names:
every candidate ``language+variant`` speaks one fixed sentence at a fixed speed and pitch, and
two names whose audio is byte-identical are one voice (espeak-ng 1.51 ignores the variant of
``en-gb+...``, for instance). ``data/speech/voices.csv`` lists every candidate, its fingerprint
and its split. The training and validation utterances are not shipped: ``scripts/train_speech.py``
synthesises them with the same functions (``--split train`` / ``--split validation`` here).

The fresh test split (``--fresh-test``, written to ``data/speech/fresh_test/``) was defined after
every choice that the first test split could have influenced: book sentences of the test passages
that the first test split did not speak, by voices whose espeak-ng variant no split of
``voices.csv`` ever spoke (``FRESH``, ``fresh_voices``, ``fresh_sentences``). It holds book
sentences only, to fit the data budget.

espeak-ng is needed only to regenerate the corpus, never to run the notebook:

    apt-get install -y espeak-ng          # Debian/Ubuntu; brew install espeak-ng on macOS
    python scripts/make_speech_corpus.py  # rewrites data/speech/audio and transcripts.csv
    python scripts/make_speech_corpus.py --test-set   # rewrites data/speech/test and voices.csv
    python scripts/make_speech_corpus.py --fresh-test # rewrites data/speech/fresh_test
    python -m utils.data                  # refreshes data/MANIFEST.sha256

Everything is seeded, and espeak-ng is deterministic, so the same espeak-ng version
rebuilds the same audio (checked with espeak-ng 1.51).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from utils import speech as speech_utils  # noqa: E402
OUT = ROOT / "data" / "speech"
SAMPLING_RATE = 16_000
BITS = 10

BOOK_SENTENCE = (
    "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES AND WE ARE GLAD TO WELCOME HIS GOSPEL"
)

# Voices are espeak-ng "language+variant" names; the held-out ones never occur in training.
TRAIN_VOICES = [
    "en-us+m1", "en-us+m3", "en-us+m7", "en-us+f1", "en-us+f3", "en-us+klatt",
    "en-gb+m2", "en-gb+f2", "en-gb+m5", "en-gb-x-rp+m6", "en-029+f5", "en-gb-scotland+m4",
]
HELDOUT_VOICES = ["en-us+m2", "en-us+f4", "en-gb+m3", "en-gb-x-rp+f1"]
# Voices of the second batch of training utterances (none of them held out), so that training hears
# 27 voices in all: an unseen voice is then less far from every voice the recogniser knows.
EXTRA_TRAIN_VOICES = [
    "en-us+m4", "en-us+m5", "en-us+m6", "en-us+f2", "en-us+f5", "en-us+klatt2", "en-us-nyc+m1",
    "en-gb+m1", "en-gb+f3", "en-gb-x-rp+m2", "en-gb-x-rp+f3", "en-029+m1", "en-gb-scotland+f2",
    "en-gb-x-gbclan+m7", "en-gb-x-gbcwmd+f5",
]
TRAIN_SPEEDS = [130, 150, 170, 190]
HELDOUT_SPEEDS = [140, 160, 180]

# A small grammar: every word of the book's sentence occurs many times in training.
PEOPLE = ["MISTER QUILTER", "MISTER BROWN", "DOCTOR GREEN", "THE TEACHER", "HIS SISTER",
          "THE OLD FARMER"]
GROUPS = ["WE", "THEY", "THE CHILDREN", "OUR FRIENDS"]
NOUNS = ["APOSTLE", "FRIEND", "VOICE", "TEACHER", "GOSPEL", "STORY", "LETTER", "GARDEN"]
PLURALS = ["CLASSES", "PEOPLE", "CHILDREN", "FARMERS", "CITIES", "SCHOOLS"]
ADJECTIVES = ["MIDDLE", "OLD", "NEW", "GOOD", "SMALL", "WORKING", "QUIET"]
FEELINGS = ["GLAD", "HAPPY", "PROUD", "READY", "SORRY"]
VERBS = ["WELCOME", "READ", "HEAR", "FOLLOW", "VISIT", "OPEN", "WRITE"]
OWNERS = ["HIS", "HER", "THE", "OUR", "THEIR"]


def _clause(rng: random.Random) -> str:
    """One clause of the grammar, picked at random."""
    kind = rng.randrange(5)
    if kind == 0:
        return (f"{rng.choice(PEOPLE)} IS THE {rng.choice(NOUNS)} OF THE "
                f"{rng.choice(ADJECTIVES)} {rng.choice(PLURALS)}")
    if kind == 1:
        return (f"{rng.choice(GROUPS)} ARE {rng.choice(FEELINGS)} TO {rng.choice(VERBS)} "
                f"{rng.choice(OWNERS)} {rng.choice(NOUNS)}")
    if kind == 2:
        return f"{rng.choice(PEOPLE)} IS {rng.choice(FEELINGS)} TO {rng.choice(VERBS)} THE {rng.choice(PLURALS)}"
    if kind == 3:
        return (f"{rng.choice(GROUPS)} {rng.choice(VERBS)} {rng.choice(OWNERS)} "
                f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}")
    return f"THE {rng.choice(ADJECTIVES)} {rng.choice(PLURALS)} ARE {rng.choice(FEELINGS)}"


def make_sentences(n: int, rng: random.Random, exclude: set[str]) -> list[str]:
    """``n`` distinct sentences of one or two clauses, none of them in ``exclude``."""
    sentences: list[str] = []
    seen = set(exclude)
    while len(sentences) < n:
        text = _clause(rng)
        if rng.random() < 0.3:
            text = f"{text} AND {_clause(rng)}"
        if text not in seen:
            seen.add(text)
            sentences.append(text)
    return sentences


def synthesise(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """Speak ``text`` with espeak-ng; return 16 kHz mono float audio, silences trimmed."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "utt.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                        "-w", str(wav), text], check=True, capture_output=True)
        audio, rate = sf.read(wav, dtype="float64")
    if rate != 22_050:
        raise RuntimeError(f"espeak-ng wrote {rate} Hz audio, expected 22050 Hz")
    audio = resample_poly(audio, 320, 441)  # 22050 Hz * 320 / 441 = 16000 Hz
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    pad = SAMPLING_RATE // 10  # keep 100 ms of silence on either side
    audio = audio[max(loud[0] - pad, 0): loud[-1] + pad]
    audio = 0.9 * audio / np.abs(audio).max()
    step = 2.0 ** (BITS - 1)
    return np.round(audio * step) / step


def build(n_train: int, n_heldout: int, seed: int, out: Path, n_extra: int = 0) -> list[dict]:
    rng = random.Random(seed)
    train_text = make_sentences(n_train, rng, exclude={BOOK_SENTENCE})
    heldout_text = [BOOK_SENTENCE] + make_sentences(n_heldout - 1, rng, exclude=set(train_text))
    # the extra training utterances come last, from their own generator, so that adding them
    # leaves the first n_train + n_heldout utterances exactly as they were
    extra_rng = random.Random(seed + 1)
    extra_text = make_sentences(n_extra, extra_rng, exclude={*train_text, *heldout_text})
    training_words = {w for s in train_text for w in s.split()}
    unseen = {w for s in heldout_text for w in s.split()} - training_words
    if unseen:
        raise RuntimeError(f"held-out words missing from training: {sorted(unseen)}")

    audio_dir = out / "audio"
    if audio_dir.exists():
        shutil.rmtree(audio_dir)
    audio_dir.mkdir(parents=True)
    rows = []
    batches = [("train", 0, train_text, TRAIN_VOICES, TRAIN_SPEEDS, rng),
               ("heldout", 0, heldout_text, HELDOUT_VOICES, HELDOUT_SPEEDS, rng),
               ("train", n_train, extra_text, EXTRA_TRAIN_VOICES, TRAIN_SPEEDS, extra_rng)]
    for split, first, texts, voices, speeds, draw in batches:
        for i, text in enumerate(texts):
            voice, speed = voices[i % len(voices)], draw.choice(speeds)
            pitch = draw.randrange(30, 71)
            audio = synthesise(text, voice, speed, pitch)
            path = f"audio/{split}_{first + i:03d}.flac"
            sf.write(out / path, audio, SAMPLING_RATE, subtype="PCM_16", format="FLAC")
            rows.append({"path": path, "text": text, "split": split, "voice": voice,
                         "speed": speed, "pitch": pitch,
                         "seconds": round(len(audio) / SAMPLING_RATE, 3)})
    with open(out / "transcripts.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


# -- the open-vocabulary corpus ---------------------------------------------------------------

FINGERPRINT_SENTENCE = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"
LANGUAGES = ["en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc",
             "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
# espeak-ng's variants that sound like a person (robots, whispers and croaks left out)
VARIANTS = ["", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt3", "klatt4", "adam", "Andy", "Annie", "Alex", "david",
            "linda", "steph", "paul", "robert", "john", "max", "michel", "Lee", "ed", "edward",
            "quincy", "aunty", "grandpa", "shelby", "travis", "victor", "zac", "norbert",
            "belinda", "benjamin", "caleb"]
SPEEDS = speech_utils.OPEN_SPEEDS  # words a minute of each split
VARIANT_SHARES = {"test": 8, "validation": 6}  # variants per split; the rest train
VOICES_PER_SPLIT = {"test": 8, "validation": 8}


def espeak_wav(text: str, voice: str, speed: int, pitch: int) -> bytes:
    """The raw WAV bytes espeak-ng writes for ``text``."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "utt.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                        "-w", str(wav), text], check=True, capture_output=True)
        return wav.read_bytes()


def fingerprint(voice: str) -> str:
    """A voice's identity by its sound: sha256 of its audio for a fixed sentence, speed and pitch."""
    return hashlib.sha256(espeak_wav(FINGERPRINT_SENTENCE, voice, 160, 50)[44:]).hexdigest()[:16]


def voice_table(seed: int = 0) -> list[dict]:
    """Every candidate voice with its fingerprint and split; one row per name.

    Variants the shipped recogniser's corpus used (with any language) are train; the others are
    shuffled (seeded) and dealt to test and validation (``VARIANT_SHARES``), the rest to train. A fingerprint is one voice: it belongs to the split of its first name in
    train, validation, test order (so a voice that sounds like a training voice never counts as
    unseen), and test and validation voices the shipped recogniser heard (its corpus's voices) go
    to train. ``VOICES_PER_SPLIT`` distinct voices are then drawn for test and validation; the
    other distinct voices of those splits are left unused.
    """
    rng = random.Random(seed)
    shipped = TRAIN_VOICES + EXTRA_TRAIN_VOICES + HELDOUT_VOICES
    heard_variants = {v.split("+")[1] for v in shipped}  # under any language: always train
    variants = [v for v in VARIANTS if v and v not in heard_variants]
    rng.shuffle(variants)
    split_of_variant = {"": "train", **{v: "train" for v in heard_variants}}
    for k, variant in enumerate(variants):
        split_of_variant[variant] = ("test" if k < VARIANT_SHARES["test"] else
                                     "validation" if k < sum(VARIANT_SHARES.values()) else "train")
    heard = {fingerprint(v) for v in shipped}
    rows = []
    for language in LANGUAGES:
        for variant in VARIANTS:
            name = f"{language}+{variant}" if variant else language
            rows.append({"voice": name, "fingerprint": fingerprint(name),
                         "variant_split": split_of_variant[variant]})
    order = {"train": 0, "validation": 1, "test": 2}
    owner: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: order[r["variant_split"]]):
        fp = row["fingerprint"]
        if fp not in owner:
            owner[fp] = "train" if fp in heard else row["variant_split"]
    first_name: dict[str, str] = {}
    for row in rows:
        first_name.setdefault(row["fingerprint"], row["voice"])
        row["same_as"] = first_name[row["fingerprint"]]
        row["heard_by_shipped_model"] = row["fingerprint"] in heard
    chosen = {}
    for split in ("validation", "test"):
        pool = sorted({r["fingerprint"] for r in rows if owner[r["fingerprint"]] == split})
        chosen.update({fp: split for fp in rng.sample(pool, min(VOICES_PER_SPLIT[split], len(pool)))})
    for row in rows:
        fp = row["fingerprint"]
        row["split"] = "train" if owner[fp] == "train" else chosen.get(fp, "unused")
    return rows


def distinct_voices(rows: list[dict], split: str) -> list[str]:
    """The first name of each distinct voice (fingerprint) of ``split`` in a ``voice_table``."""
    names = {}
    for row in rows:
        if row["split"] == split:
            names.setdefault(row["fingerprint"], row["voice"])
    return list(names.values())


def synthesise_split(texts: list[tuple[str, str]], voices: list[str], speeds: list[int],
                     out: Path, prefix: str, split: str, seed: int) -> list[dict]:
    """Speak (kind, text) pairs round-robin over ``voices`` at seeded speeds and pitches."""
    rng = random.Random(seed)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (kind, text) in enumerate(texts):
        voice, speed, pitch = voices[i % len(voices)], rng.choice(speeds), rng.randrange(30, 71)
        audio = synthesise(text, voice, speed, pitch)
        path = f"audio/{prefix}_{i:04d}.flac"
        sf.write(out / path, audio, SAMPLING_RATE, subtype="PCM_16", format="FLAC")
        rows.append({"path": path, "text": text, "split": split, "voice": voice, "speed": speed,
                     "pitch": pitch, "seconds": round(len(audio) / SAMPLING_RATE, 3), "kind": kind})
    with open(out / "transcripts.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def grammar_sentences(n: int, seed: int, split: str) -> list[str]:
    """``n`` sentences of the old grammar that its corpus (train and held out) never used.

    Training and validation sentences also avoid the shipped test split's sentences.
    """
    old = set(speech_utils.read_transcripts(OUT)["text"])
    test_csv = OUT / "test" / "transcripts.csv"
    if split != "test" and test_csv.is_file():
        old |= set(speech_utils.read_transcripts(OUT / "test")["text"])
    return make_sentences(n, random.Random(seed), exclude=old)


def build_open(split: str, n_book: int, n_grammar: int, seed: int, out: Path,
               voices_csv: Path | None = None) -> list[dict]:
    """One split of the open-vocabulary corpus: book sentences of that split plus grammar ones."""
    table = voice_table(seed)
    if voices_csv is not None:
        with open(voices_csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["voice", "fingerprint", "same_as", "split",
                                                   "heard_by_shipped_model"])
            writer.writeheader()
            writer.writerows({k: r[k] for k in writer.fieldnames} for r in table)
    voices = distinct_voices(table, split)
    texts = [("book", t) for t in speech_utils.book_sample(split, n_book, seed)]
    grammar = grammar_sentences(n_grammar, seed + {"train": 10, "validation": 20, "test": 30}[split], split)
    texts += [("grammar", t) for t in grammar]
    if (out / "audio").exists():
        shutil.rmtree(out / "audio")
    return synthesise_split(texts, voices, SPEEDS[split], out, split, split, seed + 2)


# -- the fresh test split -----------------------------------------------------------------------
# Defined after every recogniser, decoder setting and experiment of notebook 06 had been chosen, and
# after the first test split (data/speech/test) had been scored for all of them: that split is now a
# second development split, and this one is scored once, for the shipped systems only.
FRESH = {"voices": 16, "book": 32, "seed": 2026}


def fresh_voices(voices_csv: Path, n: int, seed: int) -> list[str]:
    """``n`` voices, none heard by any split: variants that no voice of any split uses.

    A variant under ``en-gb`` is the plain ``en-gb`` voice (a training voice), so a variant counts
    as never spoken when none of its distinct voices (fingerprints) in ``voices.csv`` has a split
    other than ``unused``. The pool is every distinct voice of those variants; ``n`` are drawn
    (seeded) from it, in sorted order first so that the draw does not depend on the file's order.
    """
    table = list(csv.DictReader(open(voices_csv, newline="")))
    distinct = [r for r in table if r["voice"] == r["same_as"]]
    variant = {r["voice"]: r["voice"].partition("+")[2] for r in distinct}
    spoken = {variant[r["voice"]] for r in distinct if r["split"] != "unused"}
    pool = sorted(r["voice"] for r in distinct if variant[r["voice"]] and variant[r["voice"]] not in spoken)
    if len(pool) < n:
        raise RuntimeError(f"only {len(pool)} never-spoken voices for {n}")
    return random.Random(seed).sample(pool, n)


def fresh_sentences(n: int, seed: int) -> list[str]:
    """``n`` book sentences of the test passages that the first test split did not speak."""
    spoken = set(speech_utils.read_transcripts(OUT / "test")["text"])
    pool = [t for t in speech_utils.book_sentences(seed=0)["test"] if t not in spoken]
    return random.Random(seed).sample(pool, n)


def build_fresh(out: Path, n_voices: int, n_book: int, seed: int) -> list[dict]:
    """The fresh test split: ``n_book`` book sentences dealt in turn to ``n_voices`` new voices."""
    voices = fresh_voices(OUT / "voices.csv", n_voices, seed)
    texts = [("book", t) for t in fresh_sentences(n_book, seed + 1)]
    if (out / "audio").exists():
        shutil.rmtree(out / "audio")
    return synthesise_split(texts, voices, SPEEDS["test"], out, "fresh", "fresh_test", seed + 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-set", action="store_true",
                        help="write the open-vocabulary test split to data/speech/test")
    parser.add_argument("--fresh-test", action="store_true",
                        help="write the fresh test split to data/speech/fresh_test (voices and sentences: FRESH)")
    parser.add_argument("--split", choices=["train", "validation", "test"], default=None,
                        help="write one split of the open-vocabulary corpus to --out")
    parser.add_argument("--book", type=int, default=64, help="book sentences (open-vocabulary splits)")
    parser.add_argument("--grammar", type=int, default=24, help="grammar sentences (open-vocabulary splits)")
    parser.add_argument("--train", type=int, default=180, help="training utterances")
    parser.add_argument("--heldout", type=int, default=30, help="held-out utterances")
    parser.add_argument("--extra-train", type=int, default=220,
                        help="training utterances added after the held-out ones, by more voices")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng not found: apt-get install -y espeak-ng (or brew install espeak-ng)")
    if args.fresh_test:
        out = OUT / "fresh_test" if args.out == OUT else args.out
        rows = build_fresh(out, FRESH["voices"], FRESH["book"], FRESH["seed"])
    elif args.test_set or args.split:
        split = args.split or "test"
        out = OUT / "test" if args.test_set and args.out == OUT else args.out
        rows = build_open(split, args.book, args.grammar, args.seed, out,
                          voices_csv=OUT / "voices.csv" if args.test_set else None)
    else:
        rows = build(args.train, args.heldout, args.seed, args.out, args.extra_train)
        out = args.out
    args.out = out
    size = sum((args.out / r["path"]).stat().st_size for r in rows)
    hours = sum(r["seconds"] for r in rows)
    print(f"{len(rows)} utterances, {hours:.0f} s of audio, {size / 2**20:.2f} MiB of FLAC")


if __name__ == "__main__":
    main()
