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



def _speech_mask_share(mask_prob, span=10, seeds=200):
    """Average share of the book sentence's frames that wav2vec 2.0's span masking covers (notebook 06)."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

    from . import speech

    table = speech.read_transcripts()
    book = speech.read_speech(speech.corpus_dir() / table[table.split == "heldout"].iloc[0].path)
    n_frames = speech.num_frames(speech.pretraining_config(), len(book))
    state = np.random.get_state()
    try:
        shares = []
        for seed in range(seeds):
            np.random.seed(seed)
            shares.append(_compute_mask_indices((1, n_frames), mask_prob, span).mean())
    finally:
        np.random.set_state(state)
    return float(np.mean(shares))

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

def _serve_more():
    from . import scaling as sc

    n_opt, d_opt = sc.compute_optimal(5.76e23)  # Gopher's budget, as in notebook 01
    heavy = sc.inference_aware_optimal(float(sc.chinchilla_loss(n_opt, d_opt)), 1e15)
    return heavy["n"], heavy["total_flops"] / (5.76e23 + sc.inference_flops(n_opt, 1e15))


def _zero1_gb():
    from . import scaling as sc

    return sc.training_memory(70e9, zero_stage=1, n_devices=64)["total"] / 1e9


def _random_qkv(n, d, seed, heads=1):
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, heads, n, d, generator=generator, dtype=torch.float64) for _ in range(3)]


def _test_sink_window(mask_mod):
    from . import sparse_attention as sa

    if not callable(mask_mod):
        return f"expected a mask_mod (a function of b, h, q_idx, kv_idx), got a {type(mask_mod).__name__}"
    n = 512
    expected = sa.dense_mask(sa.or_masks(sa.sliding_window(60), sa.and_masks(sa.causal(), sa.sink_tokens(4))), n)[0]
    given = sa.dense_mask(mask_mod, n)[0]
    wrong = int((given != expected).sum())
    if not wrong:
        return None
    future = int(given.triu(1).sum())
    return (f"{wrong} of {n * n} query-key pairs differ from the pattern"
            + (f"; {future} of them let a query see a later key" if future else ""))


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


def _test_gated_loop(recurrence):
    import torch

    from . import linear_attention as la

    if not callable(recurrence):
        return f"expected a function recurrence(q, k, v, g), got a {type(recurrence).__name__}"
    q, k, v = (x[0, 0] for x in _random_qkv(40, 6, 3))
    g = torch.sigmoid(torch.randn(40, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    expected = la.decayed_linear_attention(q, k, v, torch.log(g), lambda x, is_query=True: x, normalize=False)
    given = torch.as_tensor(recurrence(q, k, v, g), dtype=torch.float64)
    if given.shape != expected.shape:
        return f"returned shape {tuple(given.shape)} for 40 tokens; it should be {tuple(expected.shape)}"
    bad = (given - expected).abs().amax(dim=-1) > 1e-8
    return None if not bad.any() else (f"{int(bad.sum())} of 40 outputs differ, the first at token "
                                       f"{int(bad.nonzero()[0])}")


def _test_delta_loop(delta_loop):
    import torch

    from . import associative_recall as ar

    if not callable(delta_loop):
        return f"expected a function delta_loop(q, k, v, beta), got a {type(delta_loop).__name__}"
    q, k, v = (x[0, 0] for x in _random_qkv(30, 5, 6))
    k = torch.nn.functional.normalize(k, dim=-1)
    beta = torch.rand(30, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    expected = ar.delta_rule(q, k, v, beta)
    given = torch.as_tensor(delta_loop(q, k, v, beta), dtype=torch.float64)
    if given.shape != expected.shape:
        return f"returned shape {tuple(given.shape)} for 30 tokens; it should be {tuple(expected.shape)}"
    bad = (given - expected).abs().amax(dim=-1) > 1e-8
    return None if not bad.any() else (f"{int(bad.sum())} of 30 outputs differ, the first at token "
                                       f"{int(bad.nonzero()[0])}")


def _common_radius_rule():
    """The colour-area rule's binding score on the test scenes drawn with both shapes at the circle's radius."""
    from unittest import mock

    from . import clip

    with mock.patch.object(clip, "pair_radius", lambda shape: clip.PAIR_RADIUS):
        scenes = clip.make_pair_examples(300, classes=clip.BINDING_HELD_OUT, seed=clip.ZeroShotTests.SEEDS["test"],
                                         templates=[0])[::2]
    return clip.binding_test(clip.colour_area_scores, scenes)["accuracy"]


def _summable_headers():
    from . import tapas

    return {column.header for spec in tapas._HELD_OUT.values() for column in spec[5] if "sum" in column.operations}


EXERCISES: dict[str, Exercise] = {
    # 01 scaling laws
    "01.serve_more_size": Exercise(
        "serve_n, the parameter count that reaches target_loss at the least total compute when the model serves 1e15 tokens",
        Number(lambda: _serve_more()[0], rel=0.02),
        "sc.inference_aware_optimal(loss, inference_tokens) finds it; the loss is target_loss from section 3."),
    "01.serve_more_saving": Exercise(
        "saving, that model's total compute (training + serving 1e15 tokens) as a fraction of the Chinchilla-optimal model's (0.5 for half)",
        Number(lambda: _serve_more()[1], rel=0.03),
        "serving costs 2N FLOP a token (sc.inference_flops); add it to both models' training compute."),
    "01.zero3_gpus": Exercise(
        "gpus, the fewest 80 GB GPUs that hold a 70B model's mixed-precision Adam state with everything sharded",
        Number(14, rel=0), "mixed-precision Adam keeps 16 bytes per parameter (Rajbhandari et al. 2020)."),
    "01.zero1_gb": Exercise(
        "stage1_gb, the memory per GPU in GB with ZeRO stage 1 on 64 GPUs", Number(_zero1_gb, rel=0.02),
        "stage 1 shards only the optimizer state; every GPU keeps the 16-bit weights and gradients whole."),
    "01.lower_target_sizes": Exercise(
        "reached, the names of the sizes whose validation loss gets to 2.45 nats per character within the run",
        Items({"L2-d48", "L3-d64", "L4-d96"}), "sc.tokens_to_reach gives NaN for a size that never gets there."),
    "01.lower_target_ratio": Exercise(
        "ratio, the characters the smallest of them needs divided by the characters the largest needs",
        Number(201000 / 132000, rel=0.03), "compare the first and last sizes that reach the target, not all sizes."),
    # 02 sparse attention
    "02.sink_window": Exercise(
        "streaming, a mask_mod: a causal window of 60 keys plus the first 4 tokens as sinks",
        Passes(_test_sink_window), "a sink is a key every query may see, but never a key from the future."),
    "02.sink_window_keys": Exercise(
        "busiest, the number of keys the busiest query attends", Number(64, rel=0),
        "count a query's keys with sa.dense_mask(streaming, 512).sum(dim=-1)."),
    "02.rolling_cache": Exercise(
        "decode, a function decode(q, k, v, window) of one head's (n, d) tensors that generates with a rolling buffer",
        Passes(_test_rolling_cache), "slot i % window holds position i; before the buffer fills, use only the filled slots."),
    "02.sink_window_tiles": Exercise(
        "tiles, the number of 128 x 128 tiles at n = 512 that hold at least one kept pair of the pattern",
        Number(9, rel=0), "a causal window of 60 keys touches the diagonal tile and the one to its left; "
        "the sinks add a column at key 0 wherever the window has left it."),
    "02.gqa_cache_gib": Exercise(
        "gib, the KV cache in GiB (2**30 bytes) of one 131072-token sequence in Llama 3 405B, 16-bit values",
        Number(63.0, rel=1e-3), "per layer and token: a key and a value for each KV head (not each query head)."),
    "02.mla_ratio": Exercise(
        "ratio, how many times smaller the cache would be with DeepSeek-V3's latent (512 + 64 values a layer)",
        Number(2 * 8 * 128 / 576, rel=1e-3), "MLA keeps one vector per layer and token, shared by all heads."),
    # 03 linear attention
    "03.gated_loop": Exercise(
        "recurrence, a function recurrence(q, k, v, g) of (n, m), (n, m), (n, d) and (n,) tensors that returns y, (n, d)",
        Passes(_test_gated_loop), "update S before reading it: y_t = q_t^T S_t includes token t itself."),
    "03.delta_loop": Exercise(
        "delta_loop, a function delta_loop(q, k, v, beta) of (n, d_k), (n, d_k), (n, d_v) and (n,) tensors that returns y, (n, d_v)",
        Passes(_test_delta_loop), "first read what S returns for k_t (S^T k_t), then write beta_t times the difference; "
                                  "read y_t after the write."),
    "03.elu_memory_pairs": Exercise(
        "elu_pairs, the largest P among 2, 4, ..., 256 at which the elu+1 sum memory still recalls at least half the pairs",
        Number(8, rel=0), "recall: the share of pairs i for which argmax of phi(k_i)^T S is v_i; average over 20 draws."),
    # 04 vision transformer
    "04.shift_ink_direction": Exercise(
        "larger, the shift that pushes more ink out of the frame: 'up' or 'left'",
        Choice("up", options=("up", "left")), "sum the grey levels of the top row and of the left column."),
    "04.shift_ink_ratio": Exercise(
        "times, how many times more ink the larger of the two shifts loses", Number(1103, rel=0.03),
        "divide the two shares of the training digits' ink."),
    "04.temperature": Exercise(
        "warmer, the temperature (0.3 or 1.5) whose five samples of a digit differ more",
        Number(1.5, rel=0), "measure it: the mean absolute grey-level difference between pairs of samples of the same digit."),
    "04.vit_384_tokens": Exercise(
        "tokens_384, the tokens ViT-Base/16 reads from a 384 x 384 image", Number(577, rel=0),
        "count the 16 x 16 patches, and do not forget the [CLS] token."),
    "04.vit_384_frames": Exercise(
        "frames, the fewest 224 x 224 frames whose joint attention costs at least one 384 x 384 image's scores",
        Number(3, rel=0), "video_token_counts(video_config, num_frames=t)['joint_scores'] grows as t squared."),
    "04.divided_crossover_frames": Exercise(
        "frames, the fewest 224 x 224 frames at which divided attention costs a ViT-B layer more FLOPs than its linear layers",
        Number(4411, rel=0.001),
        "per layer, divided attention costs 4 * D * divided_scores FLOPs; compare with layer_flops(...)['linear_flops']."),
    # 05 TAPAS
    "05.pages_gold": Exercise(
        "new_gold, pandas' total of the corrected page counts", Number(144, rel=0),
        "each chapter has end_page - start_page + 1 pages."),
    "05.pages_still_sums": Exercise(
        "still_sums, 'yes' if the shipped model still adds up the column for the corrected table, else 'no'",
        Choice("yes", options=("yes", "no")), "look at the aggregator in the model's reply."),
    "05.cutoff_answer": Exercise(
        "answer_term, the answer loss term when the gold answer is 150", Number(1.447, rel=0.02),
        "the Huber loss with a small delta grows about linearly: delta times the error."),
    "05.cutoff_kept": Exercise(
        "kept, 'yes' if the question with the wrong answer stays in the loss, else 'no'",
        Choice("no", options=("yes", "no")), "compare the answer term with config.answer_loss_cutoff."),
    "05.summable": Exercise(
        "summable, the numeric columns of the unseen themes' tables whose total means something",
        Items(_summable_headers),
        "a total makes sense for things one counts or amounts one pays, not for years, heights, ratings or durations per item."),
    # 06 speech
    "06.ctc_by_hand": Exercise(
        "decoded, the text the frames spell", Choice("HE LLO"),
        "merge repeated frames first, then drop the blanks; the delimiter becomes a space."),
    "06.mask_share": Exercise(
        "share, the average share of masked frames over the 200 seeds with mask_prob=0.3",
        Number(lambda: _speech_mask_share(0.3), rel=0, abs=0.01),
        "draw with _compute_mask_indices((1, n_frames), 0.3, 10) after np.random.seed(seed); spans overlap less "
        "when there are fewer of them."),
    "06.one_letter_wer": Exercise(
        "one_letter_wer, the WER of the book's sentence with one letter changed", Number(1 / 17, rel=1e-6),
        "WER counts whole words: one wrong letter makes one wrong word."),
    "06.one_letter_cer": Exercise(
        "one_letter_cer, the CER of the book's sentence with one letter changed", Number(1 / 89, rel=1e-6),
        "CER divides the character errors by the reference's characters, spaces included."),
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
