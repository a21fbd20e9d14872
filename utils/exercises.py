"""Check an exercise's answer without reading its solution.

Each exercise cell of a notebook ends with ``check(key, answer)``. It prints one line: that the
answer is right, or that it is not yet and roughly how far off it is ("about 2.1 times too large",
"wrong sign", "3 of 4 found, 1 that does not belong"), never the answer itself. With ``answer``
still ``None`` it says what to fill in, so a notebook runs top to bottom before anyone has tried.

The expected answers live in one table, :data:`EXERCISES`, keyed ``"NN.name"`` by notebook. An
expected value may be a function of no arguments, computed on first use from the course's library
and shipped data (a number that depends on a trained checkpoint is then never typed twice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["check", "Number", "Choice", "Items", "Values", "Passes", "Exercise", "EXERCISES"]


def _resolve(value):
    return value() if callable(value) else value



def _speech_expected_blanks():
    """Expected number of blank frames over all CTC alignments of the book sentence's reference,
    under the shipped open-vocabulary recogniser (notebook 06, exercise 2). Computed without a
    backward recursion of our own: PyTorch's CTC gradient with respect to log-probabilities that came from
    a softmax is each frame's softmax output minus its posterior over the vocabulary."""
    import torch
    from transformers import pipeline

    from . import speech

    if "expected_blanks" not in _CACHE:
        table = speech.read_transcripts()
        row = table[table.split == "heldout"].iloc[0]
        asr = pipeline("automatic-speech-recognition", model=str(speech.corpus_dir() / "open_model"))
        log_probs = speech.ctc_log_probs(asr, speech.read_speech(speech.corpus_dir() / row.path))
        log_probs.requires_grad_(True)
        ids = asr.tokenizer(row.text).input_ids
        blank = asr.tokenizer.pad_token_id
        loss = torch.nn.functional.ctc_loss(log_probs[:, None], torch.tensor([ids]), torch.tensor([len(log_probs)]),
                                            torch.tensor([len(ids)]), blank=blank, reduction="sum")
        loss.backward()  # torch's gradient is taken through a softmax: exp(log_probs) minus the posteriors
        _CACHE["expected_blanks"] = float((log_probs.detach().exp() - log_probs.grad)[:, blank].sum())
    return _CACHE["expected_blanks"]


def _speech_misheard():
    """The longest word of the test book sentence that the open-vocabulary recogniser got most wrong
    (notebook 06, exercise 3; found in the voice swap's record, which holds the test split's own
    utterances and transcripts) and, for each of its letters, the frame where the CTC alignments of the
    reference most likely put it (the peak of its posterior over frames) and the model's probability of
    that letter there. Returns a dict: text, word, letters (their character positions), frames,
    letter_probs, log_probs (frames x vocabulary) and the pipeline."""
    import json

    import pandas as pd
    import torch
    from transformers import pipeline

    from . import speech

    if "misheard" not in _CACHE:
        folder = speech.corpus_dir() / "open_model"
        swap = pd.DataFrame(json.loads((folder / "voice_swap.json").read_text())["utterances"])
        own = swap[(swap.sentences == "test") & (swap.voices == "test")]
        worst = own.loc[(own.char_errors / own.chars).idxmax()]
        table = speech.read_transcripts(speech.corpus_dir() / "test")
        row = table[(table.text == worst.text) & (table.voice == worst.voice)].iloc[0]
        asr = pipeline("automatic-speech-recognition", model=str(folder))
        log_probs = speech.ctc_log_probs(asr, speech.read_speech(speech.corpus_dir() / "test" / row.path))
        ids, blank = asr.tokenizer(row.text).input_ids, asr.tokenizer.pad_token_id
        ext = [blank] + [x for i in ids for x in (i, blank)]
        alpha = speech.ctc_forward(log_probs, ids, blank=blank, return_table=True)
        beta = speech.ctc_forward(log_probs.flip(0), ids[::-1], blank=blank, return_table=True).flip(0, 1)
        posterior = alpha + beta - log_probs[:, ext] - torch.logsumexp(alpha[-1, -2:], 0)
        word = max(row.text.split(), key=len)
        start = len(" ".join(row.text.split()[:row.text.split().index(word)] + [""]))
        letters = list(range(start, start + len(word)))  # one token per character: letter j is extended symbol 2j + 1
        frames = [int(posterior[:, 2 * j + 1].argmax()) for j in letters]
        _CACHE["misheard"] = {"text": row.text, "word": word, "letters": letters, "frames": frames,
                              "letter_probs": [float(log_probs[t, ids[j]].exp()) for t, j in zip(frames, letters)],
                              "log_probs": log_probs, "asr": asr}
    return _CACHE["misheard"]


_CACHE = {}

# ---- kinds of answer: each judges an answer and says how far off it is, never what is expected ----

@dataclass(frozen=True)
class Number:
    """A number, right within `rel` (relative) or `abs` (absolute) tolerance; exact when both are 0."""
    value: Any
    rel: float = 0.01
    abs: float = 0.0

    def judge(self, answer):
        if isinstance(answer, bool) or not isinstance(answer, (int, float, np.integer, np.floating)) and not (
                hasattr(answer, "item") and getattr(answer, "ndim", 1) == 0):
            return False, f"expected a single number, got a {type(answer).__name__}"
        answer, expected = float(answer), float(_resolve(self.value))
        if not math.isfinite(answer):
            return False, "the answer is not a finite number"
        if math.isclose(answer, expected, rel_tol=self.rel, abs_tol=self.abs):
            return True, ""
        if expected == 0:
            return False, f"{'too large' if answer > 0 else 'too small'} (it should be zero)"
        if answer == 0:
            return False, "zero, which it is not"
        if (answer > 0) != (expected > 0):
            return False, "wrong sign"
        ratio = answer / expected
        if ratio >= 1.5:
            return False, f"about {_times(ratio)} times too large"
        if ratio <= 1 / 1.5:
            return False, f"about {_times(1 / ratio)} times too small"
        larger = abs(answer) > abs(expected)
        if self.rel == 0 and self.abs == 0 and float(expected).is_integer():  # a count: no percentage to decode
            return False, "too many" if larger else "too few"
        if abs(ratio - 1) < 0.005:
            return False, f"close, but not within the tolerance (too {'large' if larger else 'small'})"
        return False, f"{abs(ratio - 1):.0%} too {'large' if larger else 'small'}"


def _times(factor: float) -> str:
    """2.1, 35 or 1,100: a factor as a reader reads it, never in scientific notation."""
    return f"{factor:.2g}" if factor < 10 else f"{float(f'{factor:.2g}'):,.0f}"


@dataclass(frozen=True)
class Choice:
    """One word or phrase among `options` (compared without case or surrounding spaces)."""
    value: Any
    options: tuple = ()

    def judge(self, answer):
        if not isinstance(answer, str):
            return False, f"expected text, got a {type(answer).__name__}"
        said = answer.strip().casefold()
        options = [o.casefold() for o in _resolve(self.options)]
        if options and said not in options:
            return False, f"answer one of: {', '.join(_resolve(self.options))}"
        return (said == str(_resolve(self.value)).casefold()), "not this one"


@dataclass(frozen=True)
class Items:
    """A set of items (order does not matter)."""
    value: Any

    def judge(self, answer):
        if isinstance(answer, (str, bytes)) or not hasattr(answer, "__iter__"):
            return False, f"expected a collection of items, got a {type(answer).__name__}"
        given, expected = set(answer), set(_resolve(self.value))
        if given == expected:
            return True, ""
        return False, (f"{len(given & expected)} of {len(expected)} found, "
                       f"{len(given - expected)} that do{'es' if len(given - expected) == 1 else ''} not belong")


@dataclass(frozen=True)
class Values:
    """An array or tensor: the same shape, values within `atol` (absolute) and `rtol` (relative)."""
    value: Any
    atol: float = 1e-6
    rtol: float = 0.0

    def judge(self, answer):
        try:
            given = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else answer, dtype=float)
        except (TypeError, ValueError):
            return False, f"expected an array of numbers, got a {type(answer).__name__}"
        expected = np.asarray(_resolve(self.value), dtype=float)
        if given.shape != expected.shape:
            return False, f"shape {given.shape}, which should be {expected.shape}"
        close = np.isclose(given, expected, atol=self.atol, rtol=self.rtol)
        if close.all():
            return True, ""
        return False, f"{(~close).sum()} of {close.size} values off, by up to {np.abs(given - expected).max():.3g}"


@dataclass(frozen=True)
class Passes:
    """Code the reader wrote (a function, a mask, a model), judged by running `test` on it:
    `test(answer)` returns None when right, else a short sentence on what went wrong."""
    test: Callable

    def judge(self, answer):
        problem = self.test(answer)
        return problem is None, problem or ""


@dataclass(frozen=True)
class Exercise:
    """What to fill in (`ask`), the answer expected, and a hint shown with a wrong answer."""
    ask: str
    expected: Any
    hint: str = ""


def check(key: str, answer) -> bool | None:
    """Judge `answer` to exercise `key` and print one line. Returns True (right), False (not yet)
    or None (no answer given yet)."""
    if key not in EXERCISES:
        raise KeyError(f"no exercise {key!r}; the keys are {', '.join(sorted(EXERCISES))}")
    exercise = EXERCISES[key]
    if answer is None:
        print(f"[{key}] Not answered yet: {exercise.ask}")
        return None
    right, how = exercise.expected.judge(answer)
    if right:
        print(f"[{key}] Right.")
        return True
    print(f"[{key}] Not yet: {how}." + (f" Hint: {exercise.hint}" if exercise.hint else ""))
    return False


# ---- answers computed from the library, for the exercises that need them ----------------------

def _approach3_a():
    """a = beta / (alpha + beta) of Chinchilla's approach 3 on the 15 chosen iso-FLOP runs (notebook 01)."""
    from . import isoflop as iso

    runs, _, _ = iso.load_records()
    chosen = runs[runs.chosen]
    return iso.fit_loss_law(chosen.non_embedding, chosen.tokens, chosen.test_loss)["a"]


def _heldout_within_step():
    """'yes' if the seed-1 prediction misses by less than the step between the two largest sizes."""
    from . import scaling as sc

    results, _ = sc.load_sweep_records([1])[1]
    prediction, measured = _heldout_prediction()
    step = float(results.val_loss.iloc[-2] - results.val_loss.iloc[-1])
    return "yes" if abs(prediction - measured) < step else "no"


def _heldout_prediction():
    """(prediction, measured) for the largest size of the seed-1 fixed-step sweep (notebook 01)."""
    from . import scaling as sc

    results, _ = sc.load_sweep_records([1])[1]
    fit = sc.fit_power_law(results.non_embedding.iloc[:-1], results.val_loss.iloc[:-1])
    return float(fit["predict"](results.non_embedding.iloc[-1])), float(results.val_loss.iloc[-1])


def _heldout_direction():
    """'higher' if the seed-1 fit to the five smaller sizes predicts a higher loss than the largest size reached."""
    prediction, measured = _heldout_prediction()
    return "higher" if prediction > measured else "lower"


def _isoflop_allocation():
    """(a, k) of N_opt = k C^a through the shipped iso-FLOP valleys (notebook 01)."""
    from . import isoflop as iso

    runs, _, _ = iso.load_records()
    table = iso.valleys(runs[runs.chosen])
    return iso.fit_allocation(table.budget, table.n_opt)


def _isoflop_new_budget(budget=3e11):
    """N_opt at `budget` from the power law through the shipped iso-FLOP valleys (notebook 01)."""
    a, k = _isoflop_allocation()
    return k * budget ** a


def _isoflop_nearest_shape(budget=3e11):
    """The shape of iso.SHAPES whose counted non-embedding size is nearest (in log) to N_opt at `budget`."""
    from . import isoflop as iso
    from . import scaling as sc
    from .core import data_path

    _, _, meta = iso.load_records()
    vocab = sc.char_vocab(data_path("pride_and_prejudice.txt").read_text(encoding="utf-8"))
    counted = sc.shape_table(iso.SHAPES, len(vocab), meta["config"]["block_size"])
    row = counted.iloc[np.abs(np.log(counted.non_embedding / _isoflop_new_budget(budget))).argmin()]
    return (int(row.n_layer), int(row.d_model), int(row.n_head))


def _random_qkv(n, d, seed, heads=1):
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, heads, n, d, generator=generator, dtype=torch.float64) for _ in range(3)]


def _test_rolling_cache(decode):
    import torch

    from . import sparse_attention as sa

    if not callable(decode):
        return f"expected a function decode(q, k, v, window), got a {type(decode).__name__}"
    for n, window in ((100, 16), (37, 40)):
        q, k, v = _random_qkv(n, 8, n)
        expected = sa.reference_attention(q, k, v, sa.dense_mask(sa.sliding_window(window), n))[0, 0]
        given = torch.as_tensor(decode(q[0, 0], k[0, 0], v[0, 0], window), dtype=torch.float64)
        if given.shape != expected.shape:
            return f"decode returned shape {tuple(given.shape)} for n = {n}; it should be {tuple(expected.shape)}"
        bad = (given - expected).abs().amax(dim=-1) > 1e-6
        if bad.any():
            return (f"with n = {n} and a window of {window}, {int(bad.sum())} of {n} steps differ from sliding-window "
                    f"attention, the first at position {int(bad.nonzero()[0])}")
    return None


def _test_relabel_positions(relabel):
    """Notebook 04, exercise 1: relabel(model, permutation) must make a ViT with 1 x 1 patches give, on pixels
    shuffled by `permutation` (pixel j of the shuffled image is pixel permutation[j]), the logits the original
    model gives on the original pixels."""
    import copy

    import torch
    from transformers import ViTForImageClassification

    from . import vit

    if not callable(relabel):
        return f"expected a function relabel(model, permutation), got a {type(relabel).__name__}"
    torch.manual_seed(0)
    original = ViTForImageClassification(vit.small_vit_config(patch_size=1)).eval()
    pixels = torch.rand(4, 3, vit.DIGITS_SIZE, vit.DIGITS_SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for seed in (1, 2):
        permutation = np.random.default_rng(seed).permutation(vit.DIGITS_SIZE ** 2)
        shuffled = pixels.flatten(2)[:, :, permutation].reshape(pixels.shape)
        model = relabel(copy.deepcopy(original), permutation.copy())
        if not isinstance(model, torch.nn.Module):
            return f"relabel should return the model, got a {type(model).__name__}"
        with torch.no_grad():  # [CLS]'s last state, which the classifier reads: the untrained head's logits are all near 0
            expected = original.vit(pixels).last_hidden_state[:, 0]
            given = model.eval().vit(shuffled).last_hidden_state[:, 0]
            moved = (model.vit.embeddings.position_embeddings - original.vit.embeddings.position_embeddings)[0]
        if (given - expected).abs().max() > 1e-4:
            return (f"on shuffled pixels the relabelled model's [CLS] state (what its classifier reads) differs from "
                    f"the original's by up to {float((given - expected).abs().max()):.3g}")
        if moved[0].abs().max() > 0:
            return "the [CLS] states agree, but [CLS]'s position embedding moved, which no shuffle of pixels asks for"
    return None


def _test_stem_predictions(predictions):
    """Exercise 2's predictions: one class (0-9) per test digit of notebook 04's split, from a model that trained,
    i.e. reads at least 85% of them right. Whether the stem beats the plain ViT is the reader's measurement, not
    the check's: one seed of each cannot settle it."""
    from .vit import test_labels

    try:
        given = np.asarray(predictions.detach().cpu() if hasattr(predictions, "detach") else predictions)
    except (TypeError, ValueError):
        return f"expected an array of predicted classes, got a {type(predictions).__name__}"
    labels = test_labels()
    if given.shape != labels.shape:
        return f"expected one prediction per test digit, shape {labels.shape}, got shape {given.shape}"
    if not np.issubdtype(given.dtype, np.integer) or given.min() < 0 or given.max() > 9:
        return "expected whole-number classes 0 to 9 (the argmax of the logits, as vit.predict returns)"
    accuracy = float((given == labels).mean())
    if accuracy < 0.85:
        return (f"the stem ViT reads {accuracy:.0%} of the test digits right, below what 500 steps of the plain ViT "
                "reach: check that the stem replaced the patchifying convolution (vit.put_stem) and that it trained "
                "with the reference row's learning rate, steps and seed")
    return None


def _test_conv_stem(conv_stem):
    """Notebook 04, exercise 2: conv_stem(hidden_size) must return a module that takes (batch, 3, 8, 8) digits to
    (batch, hidden_size, 4, 4), the shape of the 2 x 2 patch embedding it replaces, and whose every output token
    depends on pixels outside its own 2 x 2 patch (a stem with overlap, unlike the patchifying layer)."""
    import torch

    if not callable(conv_stem):
        return f"expected a function conv_stem(hidden_size), got a {type(conv_stem).__name__}"
    torch.manual_seed(0)
    stem = conv_stem(64)
    if not isinstance(stem, torch.nn.Module):
        return f"conv_stem should return a torch module, got a {type(stem).__name__}"
    pixels = (torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1).requires_grad_(True)
    out = stem(pixels)
    if tuple(out.shape) != (2, 64, 4, 4):
        return f"on (2, 3, 8, 8) digits the stem gives shape {tuple(out.shape)}; the patch embedding gives (2, 64, 4, 4)"
    for row, col in ((0, 0), (1, 2), (3, 3)):
        grad, = torch.autograd.grad(out[0, :, row, col].pow(2).sum(), pixels, retain_graph=True)
        seen = grad[0].abs().sum(0) > 0
        seen[2 * row:2 * row + 2, 2 * col:2 * col + 2] = False
        if not seen.any():
            return (f"the token at grid place ({row}, {col}) sees only its own 2 x 2 patch, as the plain patch "
                    "embedding does; a convolutional stem lets it see the neighbouring pixels too")
    return None


def _fixed_pattern_density():
    from . import sparse_attention as sa

    return sa.token_density(sa.sparse_transformer(128, "fixed", 8), 4096)


def _causal_top_k_table(q, k, top_k, block_size):
    """MoBA's choice under a causal mask: per head and query block, its own block and the top_k earlier key
    blocks by (mean query of the block) . (mean key of the block); fewer when fewer earlier blocks exist."""
    import torch

    n_blocks = q.shape[-2] // block_size
    q_mean, k_mean = (x[0].unflatten(-2, (n_blocks, block_size)).mean(dim=-2) for x in (q, k))
    earlier = torch.ones(n_blocks, n_blocks, dtype=torch.bool).tril(-1)
    scores = (q_mean @ k_mean.transpose(-1, -2)).masked_fill(~earlier, float("-inf"))
    picked = scores.topk(min(top_k, n_blocks), dim=-1).indices
    table = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, picked, True) & earlier
    return table | torch.eye(n_blocks, dtype=torch.bool)


def _test_causal_top_k(select):
    import torch

    from . import sparse_attention as sa

    if not callable(select):
        return f"expected a function select(q, k, top_k, block_size), got a {type(select).__name__}"
    for n, heads, block, top_k in ((512, 2, 64, 2), (384, 1, 32, 3)):
        q, k, _ = _random_qkv(n, 16, n + top_k, heads=heads)
        mask_mod = select(q.float(), k.float(), top_k, block)
        if not callable(mask_mod):
            return f"select should return a mask_mod, got a {type(mask_mod).__name__}"
        table = _causal_top_k_table(q, k, top_k, block)
        expected = sa.dense_mask(sa.and_masks(sa.causal(), sa.blockwise(sa.lookup(table), block)), n, heads=heads)
        given = sa.dense_mask(mask_mod, n, heads=heads).expand_as(expected)
        if given.triu(1).any():
            return f"with n = {n}, some query sees a later key"
        wrong = int((given != expected).sum())
        if wrong:
            return f"with n = {n}, block {block} and top_k = {top_k}, {wrong} of {expected.numel()} (head, query, key) entries differ"
    return None


def _test_chunked_decay(chunked):
    import torch

    from . import linear_attention as la

    if not callable(chunked):
        return f"expected a function chunked(q, k, v, log_g, chunk_size), got a {type(chunked).__name__}"
    q, k, v = (x[0, 0] for x in _random_qkv(45, 6, 3))
    log_g = torch.nn.functional.logsigmoid(torch.randn(45, generator=torch.Generator().manual_seed(4),
                                                       dtype=torch.float64) + 1)
    expected = la.recurrent_linear_attention(q, k, v, lambda x, is_query=True: x, log_decay=log_g,
                                             normalize=False)
    for chunk_size in (8, 16, 45):
        given = torch.as_tensor(chunked(q, k, v, log_g, chunk_size), dtype=torch.float64)
        if given.shape != expected.shape:
            return (f"returned shape {tuple(given.shape)} for 45 tokens in chunks of {chunk_size}; "
                    f"it should be {tuple(expected.shape)}")
        bad = (given - expected).abs().amax(dim=-1) > 1e-8
        if bad.any():
            return (f"with chunks of {chunk_size}, {int(bad.sum())} of 45 outputs differ from the recurrence, "
                    f"the first at token {int(bad.nonzero()[0])}")
    return None


def _sum_memory_recall(feature_map, pairs, *, dim=32, n_values=64, draws=20, seed=0):
    """Exercise 3's reference: the share of `pairs` key-value pairs read back right from the sum memory
    S = sum_i phi(k_i) v_i^T, keys from N(0, I) in `dim` dimensions, values one-hot over `n_values`
    classes drawn at random, pair i read back as the class with the largest entry of phi(k_i)^T S;
    averaged over `draws` draws."""
    import torch

    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
        raise ValueError(f"_sum_memory_recall: pairs must be a positive integer, got {pairs!r}")
    gen = torch.Generator().manual_seed(seed)
    right = 0
    for _ in range(draws):
        features = feature_map(torch.randn(pairs, dim, generator=gen, dtype=torch.float64))
        values = torch.randint(n_values, (pairs,), generator=gen)
        S = features.T @ torch.eye(n_values, dtype=torch.float64)[values]
        right += ((features @ S).argmax(-1) == values).sum().item()
    return right / (draws * pairs)


def _test_sum_recall(recall):
    """Notebook 03, exercise 3: recall(phi, pairs, draws) must measure the sum memory's recall as
    `_sum_memory_recall` does, with both feature maps, on draws of its own."""
    import torch

    from .linear_attention import elu_plus_one

    if not callable(recall):
        return f"expected a function recall(phi, pairs, draws), got a {type(recall).__name__}"
    maps = {"elu+1": elu_plus_one, "the unit-length key": lambda x: torch.nn.functional.normalize(x, dim=-1)}
    for name, phi in maps.items():
        for pairs in (16, 32, 64):
            try:
                given = float(recall(phi, pairs, 200))
            except (TypeError, ValueError) as error:
                return f"recall(phi, {pairs}, 200) with {name} did not return one number ({error})"
            expected = _sum_memory_recall(phi, pairs, draws=200)
            if not math.isfinite(given) or abs(given - expected) > 0.04:
                side = "not a share between 0 and 1" if not 0 <= given <= 1 else (
                    f"too {'high' if given > expected else 'low'} by more than 0.04")
                return f"with {name} at P = {pairs} over 200 draws, the recall is {side}"
    return None


def _readback_test(name):
    """Notebook 03, exercise 2: name(c) must give the delta rule's reads after both writes for unit keys at
    cosine c, at cosines the notebook does not show (the same test for the formula and for the measurement)."""
    def test(reads):
        if not callable(reads):
            return f"expected a function {name}(c) of the cosine, got a {type(reads).__name__}"
        for cosine in (0.3, -0.45, 0.85):
            try:
                given = reads(cosine)
                given = np.asarray(given.detach().cpu() if hasattr(given, "detach") else given, dtype=float)
            except (TypeError, ValueError):
                return f"{name}({cosine}) did not return an array of numbers"
            expected = _delta_readback(cosine).numpy()
            if given.shape != expected.shape:
                return f"{name}({cosine}) has shape {given.shape}; it should be {expected.shape}"
            off = ~np.isclose(given, expected, atol=1e-6, rtol=0)
            if off.any():
                return f"at a cosine of {cosine}, {off.sum()} of 4 values off, by up to {np.abs(given - expected).max():.3g}"
        return None
    return test


def _delta_readback(cosine=0.6):
    """What the delta rule (beta = 1) returns for k1 and k2 after writing (k1, v1) then (k2, v2), one row per key:
    two unit keys at the given cosine, v1 = (1, 0), v2 = (0, 1); two more tokens with beta = 0 do the reading."""
    import torch

    from . import associative_recall as ar

    k1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    k2 = torch.tensor([cosine, math.sqrt(1 - cosine ** 2)], dtype=torch.float64)
    keys = torch.stack([k1, k2, k1, k2])
    values = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    beta = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    return ar.delta_rule(keys, keys, values, beta)[2:]


def _common_radius_rule():
    """The colour-area rule's binding score on the test scenes drawn with both shapes at the circle's radius."""
    from unittest import mock

    from . import clip

    with mock.patch.object(clip, "pair_radius", lambda shape: clip.PAIR_RADIUS):
        scenes = clip.make_pair_examples(300, classes=clip.BINDING_HELD_OUT, seed=clip.ZeroShotTests.SEEDS["test"],
                                         templates=[0])[::2]
    return clip.binding_test(clip.colour_area_scores, scenes)["accuracy"]


def _two_number_relations():
    from transformers import TapasTokenizer

    from . import tapas
    from .core import data_path

    tokenizer = TapasTokenizer.from_pretrained(data_path("tapas", "small_tapas"))
    table = tapas.prepare_table(tapas.book_frame())
    encoded = tokenizer(table=table, queries="How many chapters have between 19 and 40 pages?")
    column = list(table.columns).index("number_of_pages") + 1
    relations = {types[2]: types[6] for types in encoded["token_type_ids"] if types[0] == 1 and types[1] == column}
    return [relations[row] for row in range(1, len(table) + 1)]


def _relation_rule_problem(rule, cases=40):
    """None when ``rule(cell, numbers)`` gives the numeric-relation id that TapasTokenizer gives a numeric cell for a
    question holding ``numbers`` (one to three ints), on `cases` seeded tables and questions, some with a number
    equal to a cell."""
    import random

    import pandas as pd
    from transformers import TapasTokenizer

    from .core import data_path

    if not callable(rule):
        return f"relation_id must be a function of a cell's number and the question's numbers, got a {type(rule).__name__}"
    tokenizer = TapasTokenizer.from_pretrained(data_path("tapas", "small_tapas"))
    rng = random.Random(5)
    for _ in range(cases):
        cells = rng.sample(range(1, 200), 5)
        numbers = sorted(rng.sample(range(1, 200), rng.randint(1, 3)))
        if rng.random() < 0.5:
            numbers[rng.randrange(len(numbers))] = rng.choice(cells)  # a number equal to a cell
        table = pd.DataFrame({"name": ["Ann", "Bob", "Cy", "Di", "Ed"], "points": [str(c) for c in cells]})
        question = "How do the points compare with " + ", ".join(map(str, numbers)) + "?"
        encoded = tokenizer(table=table, queries=question)
        by_row = {types[2]: types[6] for types in encoded["token_type_ids"] if types[0] == 1 and types[1] == 2}
        for row, cell in enumerate(cells, start=1):
            try:
                said = rule(cell, list(numbers))
            except Exception as error:  # noqa: BLE001 - the reader's code may fail in any way
                return f"relation_id({cell}, {numbers}) raised {type(error).__name__}: {error}"
            if said != by_row[row]:
                return f"relation_id({cell}, {numbers}) returned {said!r}; the tokenizer gives {by_row[row]}"
    return None


def _cutoff_reach():
    from . import tapas

    delta, cutoff = tapas.WTQ_WEAK_SUPERVISION["huber_loss_delta"], tapas.WTQ_WEAK_SUPERVISION["answer_loss_cutoff"]
    return cutoff / delta + delta / 2


def _highest_kept_answer():
    import torch
    from transformers import TapasForQuestionAnswering, TapasTokenizer

    from . import tapas
    from .core import data_path

    folder = data_path("tapas", "small_tapas")
    model = TapasForQuestionAnswering.from_pretrained(folder, **tapas.WTQ_WEAK_SUPERVISION).eval()
    table = tapas.prepare_table(tapas.book_frame())
    answers = torch.arange(138.0, 160.0)
    inputs = TapasTokenizer.from_pretrained(folder)(table=table, queries=["What is the total number of pages?"] * len(answers),
                                                   answer_coordinates=[[]] * len(answers),
                                                   answer_text=[[]] * len(answers), return_tensors="pt")
    with torch.no_grad():
        kept = tapas.loss_terms(model, inputs, float_answer=answers)["kept"]
    return int(answers[kept == 1].max())


def _sum_guard_problem(guard, agreement=0.9):
    """None when ``guard`` (header -> bool) refuses every date and page position and agrees with the
    generator's own choice of summable columns on at least ``agreement`` of its headers, leaving out those whose
    total is a matter of judgement (``tapas.EITHER_WAY_HEADERS``)."""
    from . import tapas

    if not callable(guard):
        return f"sum_makes_sense must be a function of a column header (a str), got a {type(guard).__name__}"
    labels = {h: v for h, v in tapas.summable_headers().items() if h not in tapas.EITHER_WAY_HEADERS}
    try:
        said = {header: guard(header) for header in labels}
    except Exception as error:  # noqa: BLE001 - the reader's code may fail in any way
        return f"sum_makes_sense({next(iter(labels))!r}) raised {type(error).__name__}: {error}"
    odd = [h for h, v in said.items() if not isinstance(v, (bool, np.bool_))]
    if odd:
        return f"sum_makes_sense({odd[0]!r}) returned {said[odd[0]]!r}; it must return True or False"
    kept = [h for h in tapas.DATES_AND_POSITIONS if said[h]]
    if kept:
        return f"it would add up {', '.join(kept[:4])}: dates and page positions have no meaningful total"
    share = float(np.mean([said[h] == labels[h] for h in labels]))
    if share < agreement:
        return (f"it agrees with the generator on {share:.0%} of its {len(labels)} numeric headers; "
                f"at least {agreement:.0%} is asked (a price, a weight or a running time counts either way)")
    return None


def _largest_growth(frame):
    """The name of the chapter whose page count exceeds the previous chapter's (by chapter number) by the most, or
    None when two chapters tie for it."""
    ordered = frame.sort_values("chapter")
    growth = ordered["number_of_pages"].diff()
    best = growth.max()
    return ordered.loc[growth.idxmax(), "name"] if (growth == best).sum() == 1 else None


def _sql_growth_problem(query, copies=4):
    """None when ``query``, run by SQLite on the book's table as ``chapters`` and on ``copies`` copies of it with other
    page counts (copies with a tie left out), returns one value: the name of the chapter that grew most over the
    chapter before it, as pandas finds it on each. Each copy keeps the book's layout: a chapter ends its number of pages
    after it starts, and the next starts on the page after."""
    import random
    import sqlite3

    from . import tapas

    if not isinstance(query, str) or not query.strip():
        return f"sql must be one SQL query, as a str, got {type(query).__name__}"
    tables, seed = [tapas.book_frame()], 0
    while len(tables) < copies + 1:  # the same chapters, other page counts: a query must read them
        pages = random.Random(seed).sample(range(2, 90), len(tables[0]))
        ends = [sum(pages[: i + 1]) + i + 1 for i in range(len(pages))]  # the book's layout: end - start = pages,
        copy = tables[0].assign(start_page=[end - n for end, n in zip(ends, pages)], end_page=ends,  # the next chapter
                                number_of_pages=pages)  # starts a page after
        seed += 1
        if _largest_growth(copy) is not None:
            tables.append(copy)
    for k, frame in enumerate(tables):
        which = "the book's table" if k == 0 else f"a copy of the table with other page counts ({frame['number_of_pages'].tolist()})"
        database = sqlite3.connect(":memory:")
        try:
            frame.sample(frac=1, random_state=k).to_sql("chapters", database, index=False)  # rows in no particular order
            rows = database.execute(query).fetchall()
        except (sqlite3.Error, sqlite3.Warning) as error:
            return f"SQLite refused the query on {which}: {error}"
        finally:
            database.close()
        if len(rows) != 1 or len(rows[0]) != 1:
            return f"on {which} it returned {len(rows)} row(s) of {len(rows[0]) if rows else 0} value(s); one value is asked"
        if rows[0][0] != _largest_growth(frame):
            return f"on {which} it returned {rows[0][0]!r}, not the chapter that grew most over the one before it"
    return None


EXERCISES: dict[str, Exercise] = {
    # 01 scaling laws
    "01.approach3_a": Exercise(
        "a3, the exponent a = beta / (alpha + beta) of N_opt ~ C^a from L(N, D) = E + A/N^alpha + B/D^beta fitted to the 15 chosen iso-FLOP runs (non-embedding N, D in characters, test loss)",
        Number(lambda: _approach3_a(), rel=0.05),  # a minimum 0.1% above the lowest objective gives an a 4.6% lower
        "minimise the Huber loss (delta = 1e-3) of log L written as logsumexp([a - alpha log N, b - beta log D, e]) against log loss, with L-BFGS-B from several starts; keep the lowest."),
    "01.heldout_prediction": Exercise(
        "prediction, the held-out loss (nats per character) that a pure power law fitted to the five smaller sizes of seed 1 predicts for its largest size",
        Number(lambda: _heldout_prediction()[0], rel=0.002),
        "sc.fit_power_law(N, loss) on the rows other than the last; its 'predict' takes N."),
    "01.heldout_within_step": Exercise(
        "within, 'yes' if the miss |prediction - measured| is smaller than the step in held-out loss between the two largest sizes of seed 1, else 'no'",
        Choice(lambda: _heldout_within_step(), options=("yes", "no")),
        "the step is the loss of the second-largest size minus that of the largest, both from the record."),
    "01.heldout_direction": Exercise(
        "direction, your call before fitting: 'higher' if the law fitted to the five smaller sizes of seed 1 will predict a higher held-out loss than its largest size reached, 'lower' if it will predict a lower one",
        Choice(lambda: _heldout_direction(), options=("higher", "lower")),
        "compare the prediction with the largest size's val_loss in the record."),
    "01.isoflop_more_or_less": Exercise(
        "more_or_less, your call before computing: 'more' if N_opt at 3e11 is more than three times the fitted line's N_opt at 1e11, else 'less'",
        Choice(lambda: "more" if _isoflop_allocation()[0] > 1 else "less", options=("more", "less")),
        "on N_opt = k C^a, tripling C multiplies N_opt by 3^a; compare a with 1."),
    "01.isoflop_nearest_shape": Exercise(
        "nearest, the shape (n_layer, d_model, n_head) of iso.SHAPES whose non-embedding size (sc.shape_table) is nearest to N_opt at 3e11 on a log scale",
        Values(lambda: _isoflop_nearest_shape(), atol=0),
        "sc.shape_table(iso.SHAPES, len(vocab), block_size) counts each shape; compare log(N / N_opt)."),
    "01.isoflop_new_budget": Exercise(
        "n_new, the non-embedding size N_opt that the iso-FLOP power law N_opt = k C^a (fitted to the three valleys) gives for C = 3e11 counted FLOP",
        Number(lambda: _isoflop_new_budget(), rel=0.01),
        "iso.valleys(chosen) gives one N_opt per budget; iso.fit_allocation(budgets, n_opts) returns (a, k)."),
    # 02 sparse attention
    "02.rolling_cache": Exercise(
        "decode, a function decode(q, k, v, window) of one head's (n, d) tensors that generates with a rolling buffer",
        Passes(_test_rolling_cache), "slot i % window holds position i; before the buffer fills, use only the filled slots."),
    "02.fixed_density": Exercise(
        "density, the fraction of the n x n pairs the fixed pattern keeps at n = 4096, stride 128, 8 summary positions",
        Number(_fixed_pattern_density, rel=1e-3),
        "per query: the keys of its own block up to itself, plus c summary keys in every earlier block."),
    "02.fixed_tiles": Exercise(
        "tiles, how many of the 32 x 32 tiles of 128 x 128 the fixed pattern touches at n = 4096",
        Number(528, rel=0), "a summary column runs down through every tile row below its own block."),
    "02.causal_top_k": Exercise(
        "select, a function select(q, k, top_k, block_size) that returns a block-level MoBA's causal mask_mod",
        Passes(_test_causal_top_k), "score only earlier blocks, take the top_k of them, add the own block, "
        "and keep the causal mask inside the own block."),
    # 03 linear attention
    "03.chunked_decay": Exercise(
        "chunked, a function chunked(q, k, v, log_g, chunk_size) of one head's (n, m), (n, m), (n, d) tensors and "
        "(n,) log gates that returns y, (n, d), computed chunk by chunk",
        Passes(_test_chunked_decay),
        "inside a chunk weigh q_i^T k_j by exp(L_i - L_j) with L the running sum of log_g from the chunk's start "
        "(j <= i); a query reads the carried state times exp(L_i); the state leaves the chunk times exp(L_last), "
        "plus each k_j v_j^T of the chunk times exp(L_last - L_j)."),
    "03.delta_prediction": Exercise(
        "predicted, a function predicted(c) with your formula, worked out by hand, for what the delta rule's state "
        "returns after both writes, for unit keys at cosine c: the read with k1 in the first row and with k2 in the "
        "second (a 2 x 2 array)",
        Passes(_readback_test("predicted")),
        "after the first write S = k1 v1^T, so S^T k2 = c v1 and the second write adds k2 (v2 - c v1)^T; read S^T k1 "
        "and S^T k2 with k1 . k1 = k2 . k2 = 1 and k1 . k2 = c."),
    "03.delta_readback": Exercise(
        "reads, a function reads(c) that returns the delta rule's reads measured with ar.delta_rule after both "
        "writes, for unit keys at cosine c: the read with k1 in the first row and with k2 in the second (a 2 x 2 array)",
        Passes(_readback_test("reads")),
        "four tokens, k1 = (1, 0) and k2 = (c, sqrt(1 - c^2)): keys (and queries) k1, k2, k1, k2, values v1, v2, 0, 0, "
        "beta 1, 1, 0, 0; the last two outputs are the reads."),
    "03.sum_memory_map": Exercise(
        "more_pairs, the feature map whose sum memory holds more pairs: 'unit-length key' or 'elu+1'",
        Choice("unit-length key", options=("unit-length key", "elu+1")),
        "compare the cosine between the features of two independent keys under each map."),
    "03.sum_memory_recall": Exercise(
        "sum_recall, a function sum_recall(phi, pairs, draws) that writes `pairs` random pairs into the sum memory "
        "with feature map phi and returns the share read back right, averaged over `draws` draws",
        Passes(_test_sum_recall),
        "per draw: keys torch.randn(pairs, 32), values one-hot over 64 classes, S = phi(K)^T V; pair i is right when "
        "the argmax of phi(k_i)^T S is its class."),
    # 04 vision transformer
    "04.relabel_positions": Exercise(
        "relabel, a function relabel(model, permutation) that returns the ViT (1 x 1 patches) with its position "
        "embeddings reordered so that, on pixels shuffled by permutation, its [CLS] state (and so its logits) is the one it "
        "had on the originals",
        Passes(_test_relabel_positions),
        "position_embeddings has shape (1, 1 + 64, hidden) and its row 0 belongs to [CLS]; ask which position "
        "embedding the pixel now at place j met in the original image."),
    "04.conv_stem": Exercise(
        "conv_stem, a function conv_stem(hidden_size) that returns a torch module taking (batch, 3, 8, 8) digits to "
        "(batch, hidden_size, 4, 4) tokens, each of which sees pixels beyond its own 2 x 2 patch",
        Passes(_test_conv_stem),
        "for example a 3 x 3 convolution with padding 1 to a few dozen channels, a ReLU, then a 2 x 2 convolution of "
        "stride 2 to hidden_size channels."),
    "04.conv_stem_predictions": Exercise(
        "stem_predictions, your stem ViT's predicted class for each of the 360 test digits (vit.predict), trained as "
        "exercise 2 says; the check confirms that it trained (at least 85% right, below what the plain 2 x 2 ViT of the "
        "reference row reaches in the same steps), not that it beats the plain one, which one seed cannot settle",
        Passes(_test_stem_predictions),
        "vit.predict(stem_vit, test_data) after vit.train_digits with the reference row's lr, steps and seed; then "
        "evaluation.mcnemar(stem_predictions == y_test, plain predictions == y_test) compares the two."),
    "04.igpt_layer0_probe": Exercise(
        "layer0_accuracy, the validation accuracy (0 to 1) of the linear probe on the small iGPT's layer 0 (its input "
        "embeddings averaged over the 64 positions)",
        Number(0.3125, rel=0, abs=0.03),
        "igpt.igpt_features(igpt_model, tokens[name], layer=0) for the training and validation digits, then the probe "
        "of the iGPT probe cell; the control cell's histogram row is a fair guess."),
    "04.igpt_layer_spread": Exercise(
        "spread_digits, how many of the 288 validation digits separate the best and the worst of the probes on layers 1 to 4",
        Number(3, rel=0, abs=1),
        "one probe per layer k = 1..4 (igpt_features(..., layer=k)), its best validation accuracy (search.best_score_); "
        "(highest - lowest) * 288, rounded."),
    # 05 TAPAS
    "05.two_numbers": Exercise(
        "relations, the numeric-relation ids of the six number_of_pages cells for "
        "'How many chapters have between 19 and 40 pages?', top to bottom",
        Values(_two_number_relations, atol=0),
        "a cell compared with two numbers of the question gets both relations in one id, each relation a bit of its "
        "own; a number equal to the cell has a bit too."),
    "05.relation_rule": Exercise(
        "relation_id, a function (cell, numbers) -> the numeric-relation id a numeric cell gets for a question holding "
        "the ints in numbers (one to three of them)", Passes(_relation_rule_problem),
        "start from 0; for every number of the question, add the bit of its comparison with the cell (equal, the "
        "question's number smaller, larger), once per kind of comparison."),
    "05.cutoff_reach": Exercise(
        "reach, how far (in pages) an answer may lie from the model's expected result and still be kept, "
        "from the Huber loss and the WTQ settings", Number(_cutoff_reach, rel=0.005),
        "beyond delta the Huber loss is delta * (|error| - delta / 2); set it equal to answer_loss_cutoff."),
    "05.highest_kept": Exercise(
        "highest_kept, the largest whole answer to 'What is the total number of pages?' that the shipped model "
        "still learns from", Number(_highest_kept_answer, rel=0),
        "scan answers from 138 up with tapas.loss_terms and watch 'kept'; your reach says where to stop."),
    "05.population_share": Exercise(
        "population_share, the largest error, as a fraction of a total population of 2,000,000, at which the answer "
        "is still learned from (0.01 for 1%)", Number(lambda: _cutoff_reach() / 2_000_000, rel=0.01),
        "the reach is in the answer's own units, whatever its size: divide it by the answer."),
    "05.sum_guard": Exercise(
        "sum_makes_sense, a function of a column header (str) that returns True when a total of that column means "
        "something; it must refuse every date and page position and agree with the generator on 90% of its headers (those whose total "
        "is a matter of judgement, such as a price or a running time, count either way)",
        Passes(_sum_guard_problem),
        "counts and amounts add up (goals, pages, crew, tonnes); dates, positions, prices, ratings, ages, speeds and "
        "sizes of one thing do not. Split the header at '_' and look for such words."),
    "05.sql_growth": Exercise(
        "sql, one SQL query over the table chapters whose single value is the name of the chapter with the most pages "
        "more than the chapter before it (by chapter number)", Passes(_sql_growth_problem),
        "a window function gives each row the previous row's value: LAG(number_of_pages) OVER (ORDER BY chapter); "
        "order by the difference and keep one row."),
    # 06 speech
    "06.ctc_paths": Exercise(
        "paths_ll, the number of distinct 6-frame strings over {blank, L, O} that collapse to 'LL'", Number(35, rel=0),
        "a path is a run of blanks (maybe empty), a run of L, at least one blank, a run of L, a run of blanks (maybe "
        "empty); count the ways to share 6 frames among those five runs, or enumerate all 3**6 strings."),
    "06.expected_blanks": Exercise(
        "expected_blanks, the expected number of blank frames over all CTC alignments of the book sentence's "
        "reference under the open-vocabulary recogniser", Number(_speech_expected_blanks, rel=0, abs=0.05),
        "gamma[t, s] = alpha[t, s] + beta[t, s] - log_probs[t, l'[s]] - log p(reference), when both alpha and beta "
        "include frame t; sum exp(gamma) over the blank positions s (every even one) and over the frames."),
    "06.misheard_letters": Exercise(
        "letter_probs, for each letter of the longest word of the test book sentence the open-vocabulary "
        "recogniser got most wrong, in order: the model's probability of that letter at the frame where the CTC "
        "alignments of the reference most likely put it", Values(lambda: _speech_misheard()["letter_probs"], atol=0.01),
        "compute alpha and beta for this utterance's reference as in exercise 2; letter j of the text is extended "
        "symbol 2j + 1; take the argmax over frames of its posterior, then exp(log_probs[frame, letter id])."),
    # 07 CLIP
    "07.order_layers": Exercise(
        "layers, the fewest text layers at which a causal CLIP text encoder without position embeddings "
        "gives a caption and its twin different vectors", Number(2, rel=0.0),
        "zero the position embeddings after building each model, and count a largest difference above 1e-4 as "
        "different: below that it is float rounding."),
    "07.multi_positive_bias": Exercise(
        "best_bias, the constant bias with the lowest sigmoid loss for a batch of 64 in which every row holds 4 "
        "positives", Number(lambda: math.log(4 / 60), rel=0.0, abs=0.005),
        "with every cosine 0 every logit is b; a row now holds m positives and N - m negatives."),
    "07.common_radius_rule": Exercise(
        "common_radius, the colour-area rule's binding score on the 300 test scenes redrawn with both shapes at "
        "the circle's radius", Number(_common_radius_rule, rel=0.0, abs=0.005),
        "patch clip.pair_radius inside unittest.mock.patch.object(clip, 'pair_radius', ...), draw the scenes as "
        "ZeroShotTests does (seed 11, templates=[0], every second scene), and score clip.colour_area_scores."),
}
