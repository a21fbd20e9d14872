"""Tests of utils.speech: the corpus loader, frame arithmetic, greedy CTC and the shipped recogniser."""
import math
import shutil

import jiwer
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2Model, Wav2Vec2Processor

from utils import speech

CHECKPOINT = speech.corpus_dir() / speech.CHECKPOINT_DIR


@pytest.fixture(scope="module")
def processor():
    return Wav2Vec2Processor.from_pretrained(CHECKPOINT)


@pytest.fixture(scope="module")
def model():
    return Wav2Vec2ForCTC.from_pretrained(CHECKPOINT).eval()


@pytest.fixture(scope="module")
def heldout():
    return speech.load_corpus("heldout")


def small_corpus(tmp_path, n=3):
    """A copy of the first `n` training utterances and their transcripts in tmp_path."""
    table = speech.read_transcripts().head(n)
    (tmp_path / "audio").mkdir()
    for path in table["path"]:
        shutil.copy(speech.corpus_dir() / path, tmp_path / path)
    table.to_csv(tmp_path / "transcripts.csv", index=False)
    return table


# -- the corpus ---------------------------------------------------------------------------

def test_corpus_as_shipped(heldout):
    table = speech.read_transcripts()
    assert table["split"].value_counts().to_dict() == {"train": 400, "heldout": 30}
    assert heldout[0]["text"] == speech.BOOK_SENTENCE
    assert speech.BOOK_SENTENCE not in set(table[table["split"] == "train"]["text"])
    train = table[table["split"] == "train"]
    assert not set(heldout["voice"]) & set(train["voice"])  # held-out voices are new
    assert not set(heldout["speed"]) & set(train["speed"])  # and so are the speeds
    train_words = {w for t in train["text"] for w in t.split()}
    assert {w for t in heldout["text"] for w in t.split()} <= train_words
    for example in heldout.select(range(3)):
        assert len(example["speech"]) == pytest.approx(example["seconds"] * 16_000, abs=8)
        assert 0.8 < np.abs(example["speech"]).max() <= 0.91


def test_corpus_stays_small():
    size = sum(f.stat().st_size for f in speech.corpus_dir().rglob("*") if f.is_file())
    # About seven tenths of the course's 30 MiB data budget (utils.data.BUDGET_MIB): two recognisers, the test
    # split, the fresh test split (about 0.7 MiB) and the pre-training experiment's records over three seeds
    # (about 0.6 MiB).
    assert size < 21 * 2**20


def test_load_corpus_reads_audio_in_map(tmp_path):
    table = small_corpus(tmp_path)
    ds = speech.load_corpus(root=tmp_path)
    assert ds.num_rows == 3 and ds["text"] == list(table["text"])
    reference, rate = sf.read(tmp_path / table["path"][1], dtype="float32")
    assert rate == 16_000
    np.testing.assert_array_equal(np.asarray(ds[1]["speech"], dtype=np.float32), reference)


def test_missing_audio_file_is_named(tmp_path):
    table = small_corpus(tmp_path)
    (tmp_path / table["path"][2]).unlink()
    with pytest.raises(FileNotFoundError, match="train_002.flac is missing"):
        speech.load_corpus(root=tmp_path)


def test_corrupt_audio_file_is_named(tmp_path):
    table = small_corpus(tmp_path)
    (tmp_path / table["path"][1]).write_bytes(b"fLaC this is not audio" * 10)
    with pytest.raises(ValueError, match="train_001.flac cannot be read"):
        speech.load_corpus(root=tmp_path)


def test_truncated_audio_file_is_named(tmp_path):
    table = small_corpus(tmp_path)
    path = tmp_path / table["path"][0]
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="train_000.flac"):
        speech.load_corpus(root=tmp_path)


def test_wrong_rate_and_channels_are_named(tmp_path):
    table = small_corpus(tmp_path)
    sf.write(tmp_path / table["path"][0], np.zeros(800), 8000, format="FLAC")
    with pytest.raises(ValueError, match="train_000.flac is sampled at 8000 Hz"):
        speech.load_corpus(root=tmp_path)
    sf.write(tmp_path / table["path"][0], np.zeros((1600, 2)), 16_000, format="FLAC")
    with pytest.raises(ValueError, match="train_000.flac has 2 channels"):
        speech.load_corpus(root=tmp_path)


def test_bad_transcripts(tmp_path):
    with pytest.raises(FileNotFoundError, match="transcripts.csv"):
        speech.load_corpus(root=tmp_path)
    pd.DataFrame({"path": ["a.flac"], "text": ["A"]}).to_csv(tmp_path / "transcripts.csv")
    with pytest.raises(ValueError, match="lacks the column"):
        speech.load_corpus(root=tmp_path)
    small_corpus(tmp_path)
    with pytest.raises(ValueError, match="unknown split 'test'"):
        speech.load_corpus("test", root=tmp_path)


# -- frames --------------------------------------------------------------------------------

def test_frame_rate_of_wav2vec2_base():
    config = Wav2Vec2Config()  # the strides of wav2vec2-base: 5 * 2**6 = 320 samples
    assert speech.frames_per_second(config) == 50.0
    assert 1000 / speech.frames_per_second(config) == 20.0  # one frame per 20 ms
    assert speech.receptive_field(config) == 400  # 25 ms, as the wav2vec 2.0 paper says


def test_num_frames_matches_transformers():
    config = Wav2Vec2Config(conv_dim=(4,) * 7, hidden_size=8, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=8,
                            num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    tiny = Wav2Vec2Model(config).eval()
    for n in [400, 401, 719, 720, 16_000, 83_521]:
        assert speech.num_frames(config, n) == int(tiny._get_feat_extract_output_lengths(n))
        with torch.no_grad():
            assert tiny(torch.zeros(1, n)).last_hidden_state.shape[1] == speech.num_frames(config, n)
    assert speech.num_frames(config, 16_000) == 49
    assert speech.num_frames(config, 399) == 0


def test_num_frames_rejects_nothing():
    with pytest.raises(ValueError, match="at least one sample"):
        speech.num_frames(Wav2Vec2Config(), 0)


# -- greedy CTC ----------------------------------------------------------------------------

def one_hot_logits(tokens, tokenizer):
    ids = tokenizer.convert_tokens_to_ids(tokens)
    logits = torch.full((len(ids), len(tokenizer)), -5.0)
    logits[torch.arange(len(ids)), torch.tensor(ids)] = 5.0
    return logits


def test_greedy_ctc_steps_by_hand(processor):
    tok = processor.tokenizer
    frames = ["<pad>", "W", "W", "E", "<pad>", "|", "|", "A", "<pad>", "A", "R", "E", "E", "<pad>"]
    steps = speech.greedy_ctc_steps(one_hot_logits(frames, tok), tok)
    assert steps["frames"] == frames
    assert steps["collapsed"] == ["<pad>", "W", "E", "<pad>", "|", "A", "<pad>", "A", "R", "E",
                                  "<pad>"]
    assert steps["no_blanks"] == ["W", "E", "|", "A", "A", "R", "E"]
    assert steps["text"] == "WE AARE"  # a blank between two A's keeps both
    assert steps["text"] == tok.decode(tok.convert_tokens_to_ids(frames))


def test_greedy_ctc_steps_rejects_bad_logits(processor):
    with pytest.raises(ValueError, match="frames x vocabulary"):
        speech.greedy_ctc_steps(torch.zeros(1, 5, len(processor.tokenizer)), processor.tokenizer)
    with pytest.raises(ValueError, match="classes but the tokenizer"):
        speech.greedy_ctc_steps(torch.zeros(5, 3), processor.tokenizer)


def test_ctc_segments():
    frames = ["<pad>", "A", "A", "<pad>", "B", "|", "|", "<pad>"]
    assert speech.ctc_segments(frames) == [("A", 1, 3), ("B", 4, 5), ("|", 5, 7)]
    assert speech.ctc_segments(["<pad>"] * 3) == []


def test_ctc_words():
    frames = ["<pad>", "H", "E", "L", "<pad>", "L", "O", "|", "|", "<pad>", "W", "E", "<pad>", "|", "A"]
    assert speech.ctc_words(frames) == [("HELLO", 1, 7), ("WE", 10, 12), ("A", 14, 15)]
    assert speech.ctc_words(["<pad>", "|", "<pad>"]) == []


# -- the recogniser ------------------------------------------------------------------------

def test_vocab_and_processor(tmp_path):
    vocab = speech.make_vocab(["AB BA", "CAB"])
    assert vocab == {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5, "B": 6, "C": 7}
    processor = speech.make_processor(vocab, tmp_path)
    ids = processor.tokenizer("AB CAB").input_ids
    assert ids == [5, 6, 4, 7, 5, 6]
    assert processor.tokenizer.decode(ids) == "AB CAB"
    assert (tmp_path / "vocab.json").is_file()


def test_collator_pads_labels_with_minus_100(processor, heldout):
    batch = speech.CTCCollator(processor)([heldout[0], heldout[1]])
    lengths = [len(heldout[i]["text"]) for i in range(2)]
    assert batch["labels"].shape == (2, max(lengths))
    short = int(np.argmin(lengths))
    assert (batch["labels"][short, min(lengths):] == -100).all()
    assert batch["input_values"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"].sum(1).tolist() == [len(heldout[i]["speech"]) for i in range(2)]


def test_augment_is_seeded():
    wave = np.sin(np.linspace(0, 200, 16_000)).astype(np.float32)
    a = speech.augment(wave, np.random.default_rng(1))
    b = speech.augment(wave, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and 0.85 * 16_000 < len(a) < 1.15 * 16_000


def test_greedy_steps_match_the_tokenizer_on_real_outputs(model, processor, heldout):
    inputs = processor(heldout[0]["speech"], sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    steps = speech.greedy_ctc_steps(logits, processor.tokenizer)
    assert len(steps["frames"]) == speech.num_frames(model.config, len(heldout[0]["speech"]))
    assert steps["text"] == processor.tokenizer.decode(logits.argmax(-1))


def test_batched_transcripts_equal_one_at_a_time(model, processor, heldout):
    # utterances of different lengths: in a batch the shorter ones are padded, and the frames of the
    # padding must not reach the transcript
    waves = [heldout[i]["speech"] for i in range(4)]
    assert len({len(w) for w in waves}) == 4
    one_by_one = [speech.transcribe(model, processor, [w])[0] for w in waves]
    assert speech.transcribe(model, processor, waves, batch_size=4) == one_by_one


def test_alignment_window_must_lie_inside_the_utterance(heldout):
    wave = heldout[0]["speech"]
    with pytest.raises(ValueError, match="window"):
        speech.plot_ctc_alignment(wave, ["<pad>"] * 10, window=(1.0, 0.5))
    with pytest.raises(ValueError, match="not inside the utterance"):
        speech.plot_ctc_alignment(wave, ["<pad>"] * 10, window=(0.0, len(wave) / 16_000 + 1))


def test_shipped_recogniser_word_error_rate(heldout):
    """The shipped checkpoint's held-out WER through the ASR pipeline, as the notebook measures it.

    Measured 0.071 when it was trained (scripts/train_speech.py: 150 epochs on the first 180 training
    utterances, weights after epoch 140 kept, then 60 epochs on all 400 from that checkpoint, weights
    after epoch 40 kept; data/README.md has the commands). The same split chose those weights, so
    this is a validation score; the open-vocabulary test split below is the honest one.
    """
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(CHECKPOINT), device="cpu")
    hypotheses = [asr(wave)["text"] for wave in heldout["speech"]]
    assert jiwer.wer(list(heldout["text"]), hypotheses) == pytest.approx(0.071, abs=0.02)


def test_open_recogniser_matches_its_metrics():
    """data/speech/open_model through the ASR pipeline on the shipped test split, as notebook 06 and
    scripts/train_speech.py score it: the CER and WER of metrics.json, by kind, to 1e-3 (a check that
    the record belongs to these weights, not a pass mark on the test split). It spells with the full
    alphabet, and the validation CER that chose its weights is recorded and low."""
    import json

    from transformers import pipeline

    folder = speech.corpus_dir() / "open_model"
    metrics = json.loads((folder / "metrics.json").read_text())
    asr = pipeline("automatic-speech-recognition", model=str(folder), device="cpu")
    assert set(speech.ALPHABET) - {" "} <= set(asr.tokenizer.get_vocab())
    scores = speech.score_utterances(asr, speech.load_corpus(root=speech.corpus_dir() / "test"))
    for kind in ("book", "grammar"):
        ours = speech.error_rates(scores[scores["kind"] == kind]).iloc[0]
        shipped = metrics["test"][kind]["all"][0]
        assert ours["cer"] == pytest.approx(shipped["cer"], abs=1e-3) and ours["wer"] == pytest.approx(shipped["wer"], abs=1e-3)
    assert metrics["validation"]["cer"] < 0.25


# -- wav2vec 2.0's self-supervised objective -----------------------------------------------

@pytest.fixture(scope="module")
def pretraining_inputs():
    from transformers import Wav2Vec2ForPreTraining
    from transformers.models.wav2vec2.modeling_wav2vec2 import (_compute_mask_indices,
                                                                _sample_negative_indices)

    torch.manual_seed(0)
    np.random.seed(0)
    config = speech.pretraining_config()
    model = Wav2Vec2ForPreTraining(config)
    wave = torch.randn(1, 32_000)
    frames = int(model._get_feat_extract_output_lengths(32_000))
    mask = _compute_mask_indices((1, frames), config.mask_time_prob, config.mask_time_length,
                                 min_masks=2)
    negatives = _sample_negative_indices((1, frames), config.num_negatives, mask)
    return model, wave, torch.tensor(mask), torch.tensor(negatives, dtype=torch.long)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_pretraining_losses_match_the_model(pretraining_inputs, mode):
    model, wave, mask, negatives = pretraining_inputs
    getattr(model, mode)()
    torch.manual_seed(5)  # in training the Gumbel noise is drawn from this seed, by both
    with torch.no_grad():
        reference = model(wave, mask_time_indices=mask, sampled_negative_indices=negatives)
        torch.manual_seed(5)
        ours = speech.pretraining_losses(model, wave, mask, negatives)
    for name, ref in [("contrastive", reference.contrastive_loss), ("diversity", reference.diversity_loss),
                      ("perplexity", reference.codevector_perplexity), ("loss", reference.loss)]:
        assert ours[name].item() == pytest.approx(ref.item(), rel=1e-5), name
    assert ours["logits"].shape == (int(mask.sum()), 1 + model.config.num_negatives)
    torch.testing.assert_close(ours["targets"], reference.projected_quantized_states, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours["c"], reference.projected_states, rtol=1e-5, atol=1e-5)
    # the loss of a random model is close to guessing among the 1 + K candidates
    per_frame = ours["contrastive"].item() / int(mask.sum())
    assert 0.5 * np.log(21) < per_frame < 2 * np.log(21)


def test_pretraining_losses_reject_bad_shapes(pretraining_inputs):
    model, wave, mask, negatives = pretraining_inputs
    with pytest.raises(ValueError, match="mask_time_indices has shape"):
        speech.pretraining_losses(model, wave, mask[:, :-1], negatives)
    with pytest.raises(ValueError, match="sampled_negative_indices has shape"):
        speech.pretraining_losses(model, wave, mask, negatives[..., :3])
    with pytest.raises(ValueError, match="no frame is masked"):
        speech.pretraining_losses(model, wave, torch.zeros_like(mask), negatives)


# -- the open-vocabulary corpus and its scores ------------------------------------------------

TEST_DIR = speech.corpus_dir() / "test"


def test_normalise_text():
    assert speech.normalise_text("Mr. Darcy's ill-humoured reply!") == "MISTER DARCY'S ILL HUMOURED REPLY"
    assert speech.normalise_text('"_You_ want to tell me," said Mrs. Bennet.') == \
        "YOU WANT TO TELL ME SAID MISSUS BENNET"
    assert speech.normalise_text("'Tis so") == "TIS SO"  # apostrophes only inside words
    assert speech.normalise_text("In 1811 they met") is None  # digits are not spelled
    assert speech.normalise_text("Caf\u00e9") is None
    assert speech.normalise_text("--") is None


def test_book_sentences_are_split_by_passage():
    splits = speech.book_sentences()
    assert all(len(splits[s]) > 200 for s in ("train", "validation", "test"))
    assert not set(splits["test"]) & set(splits["train"])
    for texts in splits.values():
        assert all(set(t) <= set(speech.ALPHABET) and 4 <= len(t.split()) <= 12 for t in texts)
    assert set(speech.ALPHABET) <= set("".join(splits["test"]))
    assert speech.book_sentences(seed=1)["test"] != splits["test"]
    with pytest.raises(ValueError, match="fractions"):
        speech.book_sentences(fractions=(0.5, 0.5))


def test_open_vocabulary_test_split_as_shipped():
    test = speech.read_transcripts(TEST_DIR)
    assert test["kind"].value_counts().to_dict() == {"book": 64, "grammar": 24}
    book = test[test["kind"] == "book"]
    assert set(speech.ALPHABET) <= set(" ".join(book["text"]))  # all 26 letters and the apostrophe
    assert not set(book["text"]) & set(speech.book_sentences()["train"])
    old = speech.read_transcripts()
    assert not set(test["text"]) & set(old["text"])
    assert set(test["speed"]) == {140, 160, 180}
    voices = pd.read_csv(speech.corpus_dir() / "voices.csv")
    assert voices["fingerprint"].nunique() < len(voices)  # some names are the same voice
    assert voices.groupby("fingerprint")["split"].nunique().max() == 1  # one voice, one split
    fingerprint = dict(zip(voices["voice"], voices["fingerprint"]))
    used = {fingerprint[v] for v in test["voice"]}
    assert len(used) == test["voice"].nunique() == 8  # eight voices, distinct by their sound
    heard = set(voices.loc[voices["heard_by_shipped_model"], "fingerprint"])
    training = set(voices.loc[voices["split"] != "test", "fingerprint"])
    assert not used & heard and not used & training



def test_fresh_test_split_as_shipped():
    """The fresh test split: new book sentences of the test passages, by voices of variants no split spoke."""
    fresh = speech.read_transcripts(speech.corpus_dir() / "fresh_test")
    assert len(fresh) == 32 and set(fresh["kind"]) == {"book"} and fresh["text"].is_unique
    assert set(fresh["text"]) <= set(speech.book_sentences()["test"])
    assert not set(fresh["text"]) & set(speech.read_transcripts(TEST_DIR)["text"])
    voices = pd.read_csv(speech.corpus_dir() / "voices.csv")
    assert set(voices.set_index("voice").loc[fresh["voice"].unique(), "split"]) == {"unused"}
    variants = set(fresh["voice"].str.partition("+")[2])
    spoken = voices[(voices["split"] != "unused") & ~voices["voice"].str.startswith("en-gb+")]
    assert not variants & set(spoken["voice"].str.partition("+")[2])
    assert fresh["voice"].nunique() == voices.set_index("voice").loc[fresh["voice"].unique(), "fingerprint"].nunique() == 16

def test_error_rates_pool_like_jiwer():
    refs = ["THE CAT SAT", "A DOG", "WE ARE GLAD TO WELCOME"]
    hyps = ["THE CAT SAT", "A DOGS", "WE GLAD TO WELCOME HIM"]
    rows = []
    for r, h in zip(refs, hyps):
        w, c = jiwer.process_words(r, h), jiwer.process_characters(r, h)
        rows.append({"voice": "x" if r != "A DOG" else "y",
                     "word_errors": w.substitutions + w.deletions + w.insertions, "words": len(r.split()),
                     "char_errors": c.substitutions + c.deletions + c.insertions, "chars": len(r)})
    scores = pd.DataFrame(rows)
    overall = speech.error_rates(scores).loc["all"]
    assert overall["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert overall["cer"] == pytest.approx(jiwer.cer(refs, hyps))
    assert overall["wer_low"] <= overall["wer"] <= overall["wer_high"]
    by_voice = speech.error_rates(scores, "voice")
    assert by_voice.loc["y", "wer"] == 0.5 and by_voice.loc["y", "utterances"] == 1
    # one utterance has nothing to resample: no interval
    assert np.isnan(by_voice.loc["y", "wer_low"]) and np.isnan(by_voice.loc["y", "wer_high"])
    # the bounds are utils.evaluation's pooled-rate bootstrap, errors weighted by reference length
    from utils import evaluation

    same = evaluation.bootstrap(scores["word_errors"], weights=scores["words"], n_boot=1000, seed=0)
    assert (overall["wer_low"], overall["wer_high"]) == (same.low, same.high)
    with pytest.raises(ValueError, match="lack the column"):
        speech.error_rates(scores.drop(columns="chars"))
    with pytest.raises(ValueError, match="no column 'speed'"):
        speech.error_rates(scores, "speed")
    with pytest.raises(ValueError, match="no column 'speaker' to resample groups by"):
        speech.error_rates(scores, groups="speaker")
    with pytest.raises(ValueError, match="also the `by` column"):
        speech.error_rates(scores, "voice", groups="voice")


def test_error_rates_by_voice_groups_are_wider_when_a_voice_errs_throughout():
    # 10 voices of 12 utterances of 20 characters; each voice has its own error rate, its
    # utterances alike: resampling whole voices must give a wider interval than resampling
    # utterances, around the very same pooled rate
    rng = np.random.default_rng(0)
    voice = np.repeat([f"v{k}" for k in range(10)], 12)
    rate = rng.uniform(0.02, 0.4, 10)[np.arange(120) // 12]
    char_errors = rng.binomial(20, rate)
    scores = pd.DataFrame({"voice": voice, "char_errors": char_errors, "chars": 20,
                           "word_errors": rng.binomial(4, rate), "words": 4})
    plain = speech.error_rates(scores).loc["all"]
    grouped = speech.error_rates(scores, groups="voice").loc["all"]
    assert grouped["cer"] == plain["cer"] == char_errors.sum() / 2400
    assert grouped["cer_high"] - grouped["cer_low"] > 2 * (plain["cer_high"] - plain["cer_low"])
    assert grouped["wer_high"] - grouped["wer_low"] > plain["wer_high"] - plain["wer_low"]
    assert grouped["utterances"] == 120


def test_shipped_recogniser_on_the_open_vocabulary_test_split():
    """The shipped checkpoint's scores on the test split through the ASR pipeline equal its metrics.json."""
    import json

    from transformers import pipeline

    shipped = json.loads((CHECKPOINT / "metrics.json").read_text())["test"]
    asr = pipeline("automatic-speech-recognition", model=str(CHECKPOINT), device="cpu")
    scores = speech.score_utterances(asr, speech.load_corpus(root=TEST_DIR))
    for kind in ("book", "grammar"):
        measured = speech.error_rates(scores[scores["kind"] == kind]).iloc[0]
        recorded = shipped[kind]["all"][0]
        for rate in ("cer", "wer"):
            assert measured[rate] == pytest.approx(recorded[rate], abs=0.005), (kind, rate)


def _arpa_table(path):
    """{ngram tuple: (log10 p, log10 backoff)} read back from an ARPA file."""
    table, order = {}, None
    for line in path.read_text().splitlines():
        if line.startswith("\\") and line.endswith("-grams:"):
            order = int(line[1])
        elif order and line.strip() and not line.startswith("\\"):
            fields = line.split("\t")
            gram = tuple(fields[1].split())
            if len(gram) == order:
                table[gram] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else 0.0)
    return table


def _arpa_p(table, gram):  # the back-off rule kenlm applies
    if gram in table:
        return 10 ** table[gram][0]
    if len(gram) == 1:
        return 10 ** table[("<unk>",)][0]
    return 10 ** table.get(gram[:-1], (0, 0.0))[1] * _arpa_p(table, gram[1:])


@pytest.mark.parametrize("order", [1, 2, 3])
def test_arpa_language_model_is_normalised(tmp_path, order):
    sentences = ["THE CAT SAT", "THE CAT RAN HOME", "A DOG SAT", "THE DOG SAT DOWN", "HOME AGAIN"]
    table = _arpa_table(speech.write_arpa(sentences, tmp_path / "lm.arpa", order=order, discount=0.5))
    vocabulary = [g[0] for g in table if len(g) == 1 and g[0] != "<s>"]
    assert {"THE", "CAT", "</s>", "<unk>"} <= set(vocabulary)
    for history in [(), ("<s>",), ("THE",), ("THE", "CAT"), ("<s>", "THE"), ("DOG", "HOME"), ("ZEBRA",)]:
        history = history[-(order - 1):] if order > 1 else ()
        assert sum(_arpa_p(table, history + (w,)) for w in vocabulary) == pytest.approx(1, abs=1e-5), history
    # a seen bigram: (c - D) / c(h) + lambda(h) P(w), with lambda(h) = D N(h) / c(h)
    if order == 2:
        p_cat = 2 / (sum(len(s.split()) + 1 for s in sentences) + 1)
        assert _arpa_p(table, ("THE", "CAT")) == pytest.approx((2 - 0.5) / 3 + 0.5 * 2 / 3 * p_cat, rel=1e-4)
    with pytest.raises(ValueError, match="order must be 1 to 5"):
        speech.write_arpa(sentences, tmp_path / "x.arpa", order=0)
    with pytest.raises(ValueError, match="no words"):
        speech.write_arpa([""], tmp_path / "x.arpa")


def test_language_model_text_holds_no_test_sentence():
    """scripts/speech_lm.py learns its word model from the novel's training passages (every length of
    sentence) and the training grammar sentences: no sentence of the shipped test split is among them."""
    train = set(speech.book_sentences(min_words=1, max_words=10_000)["train"])
    test = speech.read_transcripts(speech.corpus_dir() / "test")
    assert len(test) == 88 and not train & set(test["text"])
    assert len(train & set(speech.book_sentences()["train"])) == len(speech.book_sentences()["train"])


def test_near_misses_counts_words_a_letter_or_two_off():
    table = pd.DataFrame({"text": ["THE CAT SAT ON THE MAT", "A B"],
                          "heard": ["THE KAT SAT ON THE ELEPHANT", "A"]})
    # wrong words: KAT (1 letter off: near), ELEPHANT for MAT (far), B deleted (no partner)
    assert speech.near_misses(table) == {"wrong": 3, "substituted": 2, "near": 1, "share": 1 / 3}
    assert speech.near_misses(table, max_distance=0)["near"] == 0
    with pytest.raises(ValueError, match="heard"):
        speech.near_misses(table.drop(columns="heard"))


# ---- the CTC forward recursion, blanks, paired comparisons, the voice spread test ----

@pytest.mark.parametrize("seed", range(6))
def test_ctc_forward_matches_torch_ctc_loss(seed):
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    frames, vocab = 12 + seed, 6
    log_probs = torch.randn(frames, vocab, generator=g, dtype=torch.float64).log_softmax(-1)
    length = 1 + seed % 5
    target = torch.randint(1, vocab, (length,), generator=g)
    if seed % 2:  # repeated labels need a blank between them
        target[-1] = target[0] if length > 1 else target[-1]
        target[:2] = target[0]
    ours = speech.ctc_forward(log_probs, target.tolist())
    theirs = F.ctc_loss(log_probs[:, None], target[None], torch.tensor([frames]), torch.tensor([len(target)]),
                        blank=0, reduction="none")[0]
    assert torch.isclose(ours, theirs, rtol=1e-9, atol=1e-9), (ours, theirs)


def test_ctc_forward_counts_every_path_by_hand():
    # two frames, target "a" (id 1): paths a-a, a-blank, blank-a all collapse to "a"
    p = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]], dtype=torch.float64)
    expected = 0.3 * 0.6 + 0.3 * 0.1 + 0.5 * 0.6
    assert math.isclose(float(speech.ctc_forward(p.log(), [1])), -math.log(expected), rel_tol=1e-12)
    with pytest.raises(ValueError, match="blank id"):
        speech.ctc_forward(p.log(), [0, 1])


@pytest.mark.parametrize("target", [[1, 2, 3], [2, 2, 1], [4]])
def test_ctc_forward_table_gives_posteriors_that_sum_to_one(target):
    g = torch.Generator().manual_seed(len(target))
    log_probs = torch.randn(9, 5, generator=g, dtype=torch.float64).log_softmax(-1)
    extended = [0] + [x for label in target for x in (label, 0)]
    alpha = speech.ctc_forward(log_probs, target, return_table=True)
    beta = speech.ctc_forward(log_probs.flip(0), target[::-1], return_table=True).flip(0, 1)
    assert alpha.shape == (9, len(extended))
    nll = speech.ctc_forward(log_probs, target)
    assert torch.isclose(-torch.logsumexp(alpha[-1, -2:], 0), nll, rtol=1e-12)
    assert torch.isclose(-torch.logsumexp(beta[0, :2], 0), nll, rtol=1e-12)  # backward reaches the same total
    posterior = (alpha + beta - log_probs[:, extended] + nll).exp()
    assert torch.allclose(posterior.sum(1), torch.ones(9, dtype=torch.float64), atol=1e-10)


def test_blank_positions_inside_and_between_words():
    frames = ["<pad>", "H", "<pad>", "I", "|", "<pad>", "Y", "O", "<pad>"]
    # word HI spans frames 1-3 (one blank inside), YO frames 6-7; blanks at 0, 5, 8 are outside
    assert speech.blank_positions(frames) == {"inside": 1, "outside": 3, "inside_share": 0.25}


def test_group_spread_test_finds_a_voice_effect_and_none_where_there_is_none():
    rng = np.random.default_rng(0)
    voices = np.repeat(list("abcdefgh"), 8)
    chars = rng.integers(20, 60, size=len(voices))
    no_effect = pd.DataFrame({"voice": voices, "chars": chars, "char_errors": rng.binomial(chars, 0.3)})
    rate = np.repeat(np.linspace(0.1, 0.6, 8), 8)
    effect = no_effect.assign(char_errors=rng.binomial(chars, rate))
    assert speech.group_spread_test(effect, n_perm=500)["p"] < 0.01
    assert speech.group_spread_test(no_effect, n_perm=500)["p"] > 0.05


def test_compare_cer_pairs_the_same_utterances():
    a = pd.DataFrame({"text": ["A B", "C", "D E", "F"], "voice": ["x", "x", "y", "y"],
                      "chars": [3, 1, 3, 1], "char_errors": [1, 1, 2, 0]})
    b = a.assign(char_errors=[0, 0, 1, 0])
    result = speech.compare_cer(a, b)
    assert math.isclose(result.difference, (4 - 1) / 8) and math.isclose(result.a, 4 / 8)
    with pytest.raises(ValueError, match="same utterances"):
        speech.compare_cer(a, b.iloc[::-1])
    words = a.assign(words=[2, 1, 2, 1], word_errors=[1, 1, 1, 0])
    by_words = speech.compare_cer(words, words.assign(word_errors=[0, 1, 0, 0]), rate="wer")
    assert math.isclose(by_words.difference, (3 - 1) / 6) and math.isclose(by_words.b, 1 / 6)
    with pytest.raises(ValueError, match="rate"):
        speech.compare_cer(a, b, rate="per")


def test_system_scores_splits_a_record_by_system_and_voice_t_averages_voices(tmp_path):
    import json
    rows = [{"system": s, "path": p, "voice": v, "text": "A B", "heard": "A", "chars": 3, "words": 2,
             "char_errors": e, "word_errors": 1}
            for s, errs in (("one", (0, 3, 1, 2)), ("two", (1, 1, 1, 1)))
            for p, v, e in zip("abcd", "xxyy", errs)]
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"systems": ["one", "two"], "utterances": rows}))
    record, tables = speech.system_scores(path)
    assert list(tables) == ["one", "two"] and list(tables["one"]["path"]) == list("abcd")
    assert "system" not in tables["two"].columns
    t = speech.voice_t(tables["one"], percent=False)
    assert t.value == pytest.approx(0.5) and t.n == 2  # voices x: 3/6, y: 3/6
    path.write_text(json.dumps({"systems": ["one", "two"], "utterances": rows[:-1]}))
    with pytest.raises(ValueError, match="same utterances"):
        speech.system_scores(path)


def test_book_sample_reproduces_the_shipped_test_sentences():
    test = speech.read_transcripts(TEST_DIR)
    shipped = list(test.loc[test["kind"] == "book", "text"])
    assert sorted(speech.book_sample("test", len(shipped))) == sorted(shipped)
    validation = speech.book_sample("validation", 60)
    assert len(set(validation)) == 60 and set(validation) <= set(speech.book_sentences()["validation"])
    with pytest.raises(ValueError, match="unknown split"):
        speech.book_sample("dev", 3)


def test_sentence_statistics_by_hand():
    table = speech.sentence_statistics({"a": ["THE CAT", "A DOG RAN"]}, {"THE", "A", "DOG"})
    row = table.loc["a"]
    assert row["sentences"] == 2 and row["words"] == 2.5 and row["characters"] == 8
    assert row["unknown words"] == 2 / 5
    with pytest.raises(ValueError, match="no sentence"):
        speech.sentence_statistics({"b": []}, set())


def test_voice_clusters_join_shared_accents_and_variants():
    clusters = speech.voice_clusters(["en-us+m8", "en-gb+m8", "en-gb+paul", "en-029+Annie", "en-us-nyc+paul",
                                      "en-029"])
    assert clusters["en-us+m8"] == clusters["en-gb+m8"] == clusters["en-gb+paul"] == clusters["en-us-nyc+paul"]
    assert clusters["en-029+Annie"] == clusters["en-029"] != clusters["en-us+m8"]


def test_score_transcripts_counts_edits_against_jiwer():
    table = pd.DataFrame({"text": ["WE ARE GLAD", "THE BOOK"], "voice": ["a", "b"]})
    scores = speech.score_transcripts(table, ["WE ARE GLAT", ""])
    assert scores["char_errors"].tolist() == [1, 8] and scores["chars"].tolist() == [11, 8]
    assert scores["word_errors"].tolist() == [1, 2] and scores["words"].tolist() == [3, 2]
    assert speech.error_rates(scores).iloc[0]["cer"] == pytest.approx(jiwer.cer(list(table.text), ["WE ARE GLAT", ""]))
    with pytest.raises(ValueError, match="2 references"):
        speech.score_transcripts(table, ["ONE"])


def test_constant_baseline_picks_the_best_constant_on_its_texts():
    texts = ["THE CAT", "THE DOG SAT", "A THE"]
    best = speech.constant_baseline(texts, candidates=3, max_repeats=4)
    candidates = [" ".join([w] * k) for w in ("THE", "CAT", "DOG", "SAT", "A") for k in range(1, 5)]
    assert jiwer.cer(texts, [best] * 3) == pytest.approx(min(jiwer.cer(texts, [c] * 3) for c in candidates[:12]))
    with pytest.raises(ValueError, match="non-empty"):
        speech.constant_baseline(["", " "])


def test_rule_rates_on_the_test_split_match_their_references():
    """The three rules that listen to nothing, on the shipped test split: empty = 1 exactly; the length rule's
    and the constant's book rates as recomputed with jiwer directly."""
    test = speech.read_transcripts(TEST_DIR)
    train = speech.read_transcripts().query("split == 'train'")
    texts = speech.book_sentences()["train"]
    rates = speech.rule_rates(train, test, texts)
    assert set(rates) == {"length rule", "constant (THE x 7)", "empty transcript"}
    book = test[test.kind == "book"]
    assert rates["empty transcript"].loc["book", "cer"] == rates["empty transcript"].loc["book", "wer"] == 1
    guess = speech.length_baseline(train, book)
    assert rates["length rule"].loc["book", "cer"] == pytest.approx(jiwer.cer(list(book.text), guess))
    assert rates["length rule"].loc["book", "wer"] == pytest.approx(jiwer.wer(list(book.text), guess))
    constant = [" ".join(["THE"] * 7)] * len(book)
    assert rates["constant (THE x 7)"].loc["book", "cer"] == pytest.approx(jiwer.cer(list(book.text), constant))


def test_pretraining_diagnostics_count_the_kept_distractors(pretraining_inputs):
    model, wave, mask, negatives = pretraining_inputs
    model.eval()
    with torch.no_grad():
        losses = speech.pretraining_losses(model, wave, mask, negatives)
    lines = speech.pretraining_diagnostics(losses, model.config.num_negatives)
    kept = torch.isfinite(losses["logits"][:, 1:]).sum(1)
    assert len(lines) == 3 and f"of {int(mask.sum())} masked frames" in lines[1]
    assert f"ln(K_kept + 1) = {torch.log(kept + 1.0).mean().item():.2f}" in lines[2]


def test_voice_swap_table_is_sentences_by_voices_with_voice_intervals():
    rows = [{"sentences": s, "voices": v, "voice": f"{v}{k % 3}", "char_errors": e, "chars": 10,
             "word_errors": 1, "words": 2}
            for s, base in (("validation", 1), ("test", 2)) for v, extra in (("validation", 0), ("test", 3))
            for k, e in enumerate([base + extra] * 6)]
    table, rates = speech.voice_swap_table(rows)
    assert list(table.index) == ["test sentences", "validation sentences"]
    assert list(table.columns) == ["test voices", "validation voices"]
    assert rates.loc[("validation", "test"), "cer"] == pytest.approx(0.4)
    assert table.loc["test sentences", "validation voices"].startswith("20.0% [")


def test_pretraining_experiment_pairs_seeds_on_the_shipped_records():
    """The seeds are paired by seed: the difference is the mean of the per-seed differences of the records."""
    import json
    directory = speech.corpus_dir() / "pretraining"
    test_table = speech.load_corpus(root=speech.corpus_dir() / "test").to_pandas()
    result = speech.pretraining_experiment(test_table)
    assert result["seeds"] == [0, 1, 2]
    book = {arm: [json.loads((directory / (f"tenth_{arm}.json" if s == 0 else f"tenth_{arm}_seed{s}.json")).read_text())
                  ["test"]["book"]["all"][0]["cer"] for s in (0, 1, 2)] for arm in ("pretrained", "scratch")}
    expected = sum(a - b for a, b in zip(book["pretrained"], book["scratch"])) / 3
    assert result["paired_t"].difference == pytest.approx(expected)
    assert result["welch_t"].difference == pytest.approx(expected)  # the same difference of means, unpaired
    assert result["welch_t"].p_value != pytest.approx(result["paired_t"].p_value)
    assert result["over_seeds"]["scratch"].values == pytest.approx(book["scratch"])


def test_pretraining_experiment_needs_two_seeds(tmp_path):
    import shutil
    for name in ("pretraining.json", "tenth_pretrained.json", "tenth_scratch.json"):
        shutil.copy(speech.corpus_dir() / "pretraining" / name, tmp_path / name)
    test_table = speech.load_corpus(root=speech.corpus_dir() / "test").to_pandas()
    with pytest.raises(ValueError, match="at least 2 seeds"):
        speech.pretraining_experiment(test_table, tmp_path)
