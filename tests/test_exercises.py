"""The exercise checker: it judges without giving the answer away, and the notebooks use every entry."""
import math
import re

import nbformat
import numpy as np
import pytest
import torch

from utils import exercises as ex
from utils.core import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
CHECK = re.compile(r"""check\(\s*["']([^"']+)["']""")


def exercise_cells(path):
    """(reader cell, solution cell) pairs: a hidden solution and the cell right before it. A solution
    hides its source and its output, since the output states the answer."""
    cells = nbformat.read(path, as_version=4).cells
    return [(cells[i - 1], cell) for i, cell in enumerate(cells)
            if cell.cell_type == "code" and cell.metadata.get("jupyter", {}).get("source_hidden")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_solutions_are_hidden_in_colab_too(path):
    """JupyterLab collapses a cell by `jupyter.source_hidden`; Colab shows a cell whose metadata has `cellView: form` as
    a form, its code hidden under the `# @title` line until the reader opens it."""
    for _, solution in exercise_cells(path):
        assert solution.metadata.get("cellView") == "form", (path.name, solution.source[:60])
        assert solution.source.startswith("# @title Solution"), (path.name, solution.source[:60])


def test_every_key_used_in_a_notebook_is_in_the_table_and_every_entry_is_used():
    used = {}
    for path in NOTEBOOKS:
        for key in CHECK.findall("\n".join(c.source for c in nbformat.read(path, as_version=4).cells)):
            used.setdefault(key, set()).add(path.stem[:2])
    assert set(used) - set(ex.EXERCISES) == set(), "keys missing from utils.exercises.EXERCISES"
    assert set(ex.EXERCISES) - set(used) == set(), "table entries no notebook uses"
    for key, notebooks in used.items():
        assert notebooks == {key[:2]}, f"{key} is used in notebook(s) {notebooks}, not in its own"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_each_exercise_has_a_reader_cell_that_checks_none_and_a_solution_that_asserts_the_check(path):
    pairs = exercise_cells(path)
    assert len(pairs) >= 3, f"{path.name}: fewer than three exercises with hidden solutions"
    for reader, solution in pairs:
        keys = CHECK.findall(reader.source)
        assert keys and reader.cell_type == "code" and not reader.metadata.get("jupyter", {}).get("source_hidden")
        for line in reader.source.splitlines():
            assert (not line.strip() or line.startswith(("#", "check(", "from utils.exercises import check"))
                    or re.match(r"\w+ = None\b", line)), f"{path.name}: the reader cell for {keys} prefills more than None: {line!r}"
        assert solution.metadata["jupyter"].get("outputs_hidden"), f"{path.name}: {keys}' solution shows its output"
        assert solution.outputs == [] and "nbval-ignore-output" in solution.metadata.get("tags", []), (
            f"{path.name}: {keys}' solution is saved with its output (Colab and GitHub would show the answer)")
        last = solution.source.strip().splitlines()[-1]
        assert last.startswith("assert ") and set(CHECK.findall(last)) == set(keys), (path.name, keys, last)


def test_an_unanswered_exercise_says_what_to_fill_in(capsys):
    assert ex.check("02.fixed_tiles", None) is None
    assert capsys.readouterr().out.startswith("[02.fixed_tiles] Not answered yet: tiles,")
    with pytest.raises(KeyError, match="no exercise 'nope'"):
        ex.check("nope", 1)


@pytest.mark.parametrize("answer, message", [
    (1056, "about 2 times too large"), (132, "about 4 times too small"), (-528, "wrong sign"), (500, "too few"), (527, "too few"),
    (529, "too many"), ("528", "expected a single number, got a str"), (True, "expected a single number"), (float("nan"), "not a finite"),
])
def test_a_wrong_number_is_told_how_far_off_without_the_answer(answer, message, capsys):
    assert ex.check("02.fixed_tiles", answer) is False
    out = capsys.readouterr().out
    assert message in out and "528" not in out.replace(str(answer), "")


def test_numbers_within_tolerance_and_numpy_and_torch_scalars_pass():
    number = ex.Number(0.5, rel=0.01)
    assert number.judge(0.504)[0] and not number.judge(0.51)[0]
    assert number.judge(np.float32(0.5))[0] and number.judge(torch.tensor(0.5))[0]
    assert ex.Number(0.5, rel=0, abs=0.15).judge(0.62)[0]
    assert ex.Number(lambda: math.pi).judge(3.14159)[0]  # computed on use
    assert number.judge(0.52) == (False, "4% too large")
    assert ex.Number(0.5, rel=0.001).judge(0.5008) == (False, "close, but not within the tolerance (too large)")
    assert ex.Number(1.0).judge(1100.0) == (False, "about 1,100 times too large")
    assert ex.Number(1.0).judge(1 / 35) == (False, "about 35 times too small")


def test_choice_items_and_values():
    choice = ex.Choice("up", options=("up", "left"))
    assert choice.judge(" Up ")[0] and choice.judge("left") == (False, "not this one")
    assert choice.judge("down") == (False, "answer one of: up, left")
    items = ex.Items({"a", "b", "c"})
    assert items.judge(["c", "a", "b"])[0]
    assert items.judge({"a", "x"}) == (False, "1 of 3 found, 1 that does not belong")
    assert items.judge("abc")[0] is False
    values = ex.Values(np.arange(4.0))
    assert values.judge(torch.arange(4.0))[0]
    assert values.judge(np.zeros(3)) == (False, "shape (3,), which should be (4,)")
    assert values.judge(np.array([0, 1, 2, 5.0])) == (False, "1 of 4 values off, by up to 2")


def test_library_answers_are_right():
    from utils import scaling as sc

    from utils import isoflop as iso

    results, _ = sc.load_sweep_records([1])[1]
    small = sc.fit_power_law(results.non_embedding.iloc[:-1], results.val_loss.iloc[:-1])
    assert ex.check("01.heldout_prediction", float(small["predict"](results.non_embedding.iloc[-1])))
    assert not ex.check("01.heldout_prediction", float(results.val_loss.iloc[-1]) + 0.05)
    assert ex.check("01.heldout_within_step", "yes") and not ex.check("01.heldout_within_step", "no")  # miss 0.11 < step 0.19
    assert ex.check("01.heldout_direction", "Higher ") and not ex.check("01.heldout_direction", "lower")  # 2.273 > 2.167
    assert not ex.check("01.heldout_direction", "above")  # not one of the options
    runs, _, _ = iso.load_records()
    table = iso.valleys(runs[runs.chosen])
    a, k = iso.fit_allocation(table.budget, table.n_opt)
    assert ex.check("01.isoflop_new_budget", k * 3e11 ** a)
    assert not ex.check("01.isoflop_new_budget", table.n_opt.max())
    assert ex.check("01.isoflop_more_or_less", "less") and not ex.check("01.isoflop_more_or_less", "more")  # a = 0.55 < 1
    assert ex.check("01.isoflop_nearest_shape", (2, 24, 2))  # 14,496 parameters against N_opt = 12,500
    assert not ex.check("01.isoflop_nearest_shape", (2, 16, 2)) and not ex.check("01.isoflop_nearest_shape", (2, 24))
    chosen = runs[runs.chosen]
    law = iso.fit_loss_law(chosen.non_embedding, chosen.tokens, chosen.test_loss)
    assert abs(law["a"] - 0.560) < 0.003  # the shipped records give 0.560 from 32 starts and from 1,024
    assert ex.check("01.approach3_a", law["beta"] / (law["alpha"] + law["beta"]))
    assert not ex.check("01.approach3_a", law["alpha"] / (law["alpha"] + law["beta"]))  # b, not a
    total = iso.fit_loss_law(chosen.total, chosen.tokens, chosen.test_loss)
    assert not ex.check("01.approach3_a", total["a"])  # all parameters counted: 0.49


# ---- the code-judging exercises accept a right answer and reject the usual slips ------------------

def test_sum_guard_judge():
    judge = ex.EXERCISES["05.sum_guard"].expected.judge
    no_total = {"year", "founded", "launched", "planted", "established", "ascent", "last", "start", "end", "price",
                "rating", "age", "speed", "height", "altitude", "summit", "diameter", "length", "weight", "lifespan"}
    assert judge(lambda header: not no_total & set(header.split("_"))) == (True, "")
    assert "start_page" in judge(lambda header: True)[1]  # sums everything, start pages included
    assert "agrees with the generator" in judge(lambda header: header in ("start_page",) and False)[1]  # refuses everything
    assert "True or False" in judge(lambda header: 1)[1]
    assert "function" in judge("goals")[1]
    from utils import tapas  # a guard that only refuses dates and positions is not enough
    assert "agrees with the generator on 84%" in judge(lambda header: header not in tapas.DATES_AND_POSITIONS)[1]
    flipped = set(tapas.EITHER_WAY_HEADERS)  # headers a sound judgement may call either way are not scored
    assert judge(lambda header: (not no_total & set(header.split("_"))) != (header in flipped)) == (True, "")


def test_sql_growth_judge_runs_the_query_on_shuffled_tables_with_other_page_counts():
    judge = ex.EXERCISES["05.sql_growth"].expected.judge
    right = ("SELECT name FROM (SELECT name, number_of_pages - LAG(number_of_pages) OVER (ORDER BY chapter) AS growth "
             "FROM chapters) ORDER BY growth DESC LIMIT 1")
    assert judge(right) == (True, "")
    typed, why = judge("SELECT 'Text classification'")  # the book's answer, typed: wrong on the copies
    assert not typed and "other page counts" in why
    unordered = right.replace("OVER (ORDER BY chapter)", "OVER ()")  # the rows' stored order, shuffled by the judge
    assert not judge(unordered)[0]
    assert not judge(right.replace("DESC", "ASC"))[0]  # the largest fall, not the largest growth
    assert "syntax error" in judge("SELEC 1")[1]
    assert "6 row(s)" in judge("SELECT name FROM chapters")[1]
    assert "as a str" in judge(None)[1] and "as a str" in judge("  ")[1]
    assert ex._largest_growth(__import__("utils").tapas.book_frame()) == "Text classification"  # 36 - 10 = 26 pages


def test_relation_rule_judge():
    judge = ex.EXERCISES["05.relation_rule"].expected.judge
    right = lambda cell, numbers: sum({1 if n == cell else 2 if n < cell else 4 for n in numbers})  # noqa: E731
    assert judge(right) == (True, "")
    every_number = lambda cell, numbers: sum(1 if n == cell else 2 if n < cell else 4 for n in numbers)  # noqa: E731
    assert "the tokenizer gives" in judge(every_number)[1]  # two numbers below the cell set the bit once, not twice
    swapped = lambda cell, numbers: sum({1 if n == cell else 4 if n < cell else 2 for n in numbers})  # noqa: E731
    assert "the tokenizer gives" in judge(swapped)[1]
    assert "raised" in judge(lambda cell: 0)[1] and "function" in judge(6)[1]


def test_causal_top_k_judge():
    from utils import sparse_attention as sa

    def select(q, k, top_k, block_size, causal=True):
        table = ex._causal_top_k_table(q, k, top_k, block_size)
        blocks = sa.blockwise(sa.lookup(table), block_size)
        return sa.and_masks(sa.causal(), blocks) if causal else blocks

    judge = ex.EXERCISES["02.causal_top_k"].expected.judge
    assert judge(select) == (True, "")
    assert "sees a later key" in judge(lambda q, k, t, b: select(q, k, t, b, causal=False))[1]
    assert "sees a later key" in judge(lambda q, k, t, b: sa.top_k_blocks(q, k, t, block_size=b)[0])[1]
    # forgetting the own block
    own_missing = judge(lambda q, k, t, b: sa.and_masks(select(q, k, t, b), lambda bb, h, i, j: i // b != j // b))[1]
    assert "entries differ" in own_missing


def test_fixed_pattern_answers():
    assert abs(ex._fixed_pattern_density() - (4096 * 129 / 2 + 8 * 128 * 32 * 31 / 2) / 4096**2) < 1e-12
    assert ex.check("02.fixed_tiles", 528) and not ex.check("02.fixed_tiles", 36)


def _decode(q, k, v, window, causal_only=False):
    n = len(q)
    out = []
    for i in range(n):
        start = 0 if causal_only else max(0, i - window + 1)
        weights = torch.softmax(k[start:i + 1] @ q[i] / q.shape[-1] ** 0.5, dim=0)
        out.append(weights @ v[start:i + 1])
    return torch.stack(out)


def test_rolling_cache_judge():
    judge = ex.EXERCISES["02.rolling_cache"].expected.judge
    assert judge(_decode) == (True, "")
    right, problem = judge(lambda q, k, v, w: _decode(q, k, v, w, causal_only=True))
    assert not right and "differ from sliding-window attention, the first at position 16" in problem


def _chunked_decay(q, k, v, log_g, chunk_size, carry_decay=True):
    S, ys = q.new_zeros(k.shape[-1], v.shape[-1]), []
    for s in range(0, len(q), chunk_size):
        qc, kc, vc = q[s:s + chunk_size], k[s:s + chunk_size], v[s:s + chunk_size]
        L = log_g[s:s + chunk_size].cumsum(0)
        D = (L[:, None] - L[None, :]).masked_fill(torch.ones(len(L), len(L), dtype=torch.bool).triu(1),
                                                  float("-inf")).exp()
        ys.append((qc @ kc.T * D) @ vc + (L.exp()[:, None] if carry_decay else 1) * (qc @ S))
        S = (L[-1].exp() if carry_decay else 1) * S + (kc * (L[-1] - L).exp()[:, None]).T @ vc
    return torch.cat(ys)


def test_chunked_decay_judge():
    judge = ex.EXERCISES["03.chunked_decay"].expected.judge
    assert judge(_chunked_decay)[0]
    # forgetting to decay the carried state is right inside the first chunk and wrong from the second on
    right, problem = judge(lambda q, k, v, g, c: _chunked_decay(q, k, v, g, c, carry_decay=False))
    assert not right and "with chunks of 8" in problem and "the first at token 8" in problem
    right, problem = judge(lambda q, k, v, g, c: _chunked_decay(q, k, v, g, c)[:-1])
    assert not right and "shape (44, 6)" in problem


def test_delta_readback_expects_the_closed_form_at_unseen_cosines_and_rejects_the_sum():
    """beta = 1, unit keys at cosine c: the delta rule reads (1 - c^2) v1 + c v2 for k1 and exactly v2 for k2. The
    answer is a function of c, checked at cosines other than the notebook's 0.6."""
    judge = ex.EXERCISES["03.delta_readback"].expected.judge
    assert judge(lambda c: [[1 - c * c, c], [0.0, 1.0]])[0]
    assert judge(lambda c: torch.tensor([[1 - c * c, c], [0.0, 1.0]], dtype=torch.float64))[0]
    right, problem = judge(lambda c: [[1.0, c], [c, 1.0]])  # the plain sum's reads
    assert not right and "values off" in problem
    assert not judge(lambda c: [[0.64, 0.6], [0.0, 1.0]])[0]  # the notebook's cosine, typed in
    right, problem = judge([[0.64, 0.6], [0.0, 1.0]])  # an array, not a function
    assert not right and "function" in problem
    assert not judge(lambda c: [1 - c * c, c])[0]


def test_clip_exercises_expect_the_closed_forms():
    """Several positives: b* = log(m / (N - m)); one radius: counting pixels binds far above chance."""
    judge = ex.EXERCISES["07.multi_positive_bias"].expected.judge
    assert judge(math.log(4 / 60))[0] and not judge(-math.log(63))[0]
    common = ex._common_radius_rule()
    assert 0.75 < common < 1.0
    assert ex.EXERCISES["07.common_radius_rule"].expected.judge(common)[0]


def _sum_recall(phi, pairs, draws, read_raw_keys=False, seed=5):
    gen, right = torch.Generator().manual_seed(seed), 0
    for _ in range(draws):
        keys = torch.randn(pairs, 32, generator=gen, dtype=torch.float64)
        values = torch.randint(64, (pairs,), generator=gen)
        S = phi(keys).T @ torch.eye(64, dtype=torch.float64)[values]
        right += (((keys if read_raw_keys else phi(keys)) @ S).argmax(-1) == values).sum().item()
    return right / (draws * pairs)


def test_sum_memory_reference_one_pair_always_reads_back_and_overlap_hurts():
    """The checker's own reference lives in utils.exercises, not in a module the notebook imports."""
    from utils import linear_attention as la

    assert not hasattr(la, "sum_memory_recall")
    assert ex._sum_memory_recall(la.elu_plus_one, 1, draws=5) == 1.0
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    assert ex._sum_memory_recall(unit, 64, draws=5) > ex._sum_memory_recall(la.elu_plus_one, 64, draws=5)
    with pytest.raises(ValueError, match="pairs"):
        ex._sum_memory_recall(unit, 0)


def test_sum_memory_judges_the_reader_s_own_memory_and_the_prediction():
    """A memory written with other random draws passes for both maps; reading with the raw key instead of its
    features, or measuring elu+1 whatever phi is, does not. The prediction is a choice between the two maps."""
    from utils import linear_attention as la

    judge = ex.EXERCISES["03.sum_memory_recall"].expected.judge
    assert judge(_sum_recall) == (True, "")
    right, problem = judge(lambda phi, pairs, draws: _sum_recall(phi, pairs, draws, read_raw_keys=True))
    assert not right and "elu+1 at P = 16" in problem and "by more than 0.04" in problem
    right, problem = judge(lambda phi, pairs, draws: _sum_recall(la.elu_plus_one, pairs, draws))
    assert not right and "the unit-length key" in problem
    assert not judge(lambda phi, pairs, draws: 7.0)[0] and "function" in judge([0.5, 0.5, 0.5])[1]
    choice = ex.EXERCISES["03.sum_memory_map"].expected.judge
    assert choice(" Unit-length key")[0] and not choice("elu+1")[0] and not choice("relu")[0]


def test_delta_prediction_is_checked_like_the_measurement():
    judge = ex.EXERCISES["03.delta_prediction"].expected.judge
    assert judge(lambda c: [[1 - c * c, c], [0.0, 1.0]])[0]
    right, problem = judge(lambda c: [[1.0, c], [c, 1.0]])  # the plain sum's reads
    assert not right and "values off" in problem
    right, problem = judge(None)
    assert not right and "predicted(c)" in problem


def _relabel(order, move_cls=False):
    def relabel(model, permutation):
        table = model.vit.embeddings.position_embeddings
        with torch.no_grad():
            table[:, 1:] = table[:, 1:][:, torch.as_tensor(order(permutation))].clone()
            if move_cls:
                table[:, 0] += 1.0  # a constant shift: LayerNorm removes it, so only the embedding check sees it
        return model
    return relabel


def test_relabel_positions_judge():
    """A ViT with 1 x 1 patches: the token at place j carries pixel permutation[j], so it needs that pixel's
    embedding; the inverse permutation, no change at all, or a moved [CLS] embedding are refused."""
    judge = ex.EXERCISES["04.relabel_positions"].expected.judge
    assert judge(_relabel(lambda p: p)) == (True, "")
    for wrong, message in ((_relabel(np.argsort), "[CLS] state"), (lambda m, p: m, "[CLS] state"),
                           (_relabel(lambda p: p, move_cls=True), "position embedding moved"),
                           (lambda m, p: None, "should return the model")):
        right, problem = judge(wrong)
        assert not right and message in problem, problem


def test_conv_stem_judge():
    """A stem with overlap and the right shape passes; the plain patchifying convolution, a wrong shape or a
    non-module are refused."""
    import torch

    judge = ex.EXERCISES["04.conv_stem"].expected.judge
    nn = torch.nn
    assert judge(lambda d: nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, d, 2, stride=2))) == (True, "")
    for wrong, message in ((lambda d: nn.Conv2d(3, d, 2, stride=2), "sees only its own 2 x 2 patch"),
                           (lambda d: nn.Conv2d(3, d, 3, padding=1), "gives shape"),
                           (lambda d: None, "torch module"), (None, "expected a function")):
        right, problem = judge(wrong)
        assert not right and message in problem, problem


def test_conv_stem_predictions_check_the_training_not_the_outcome():
    """Any model that trained passes, whether or not it beats the plain ViT; chance-level or malformed predictions are
    refused with the reason."""
    import numpy as np

    from utils.vit import test_labels

    judge = ex.EXERCISES["04.conv_stem_predictions"].expected.judge
    labels = test_labels()
    worse = labels.copy()
    worse[:30] = (worse[:30] + 1) % 10  # 91.7% right: fewer than the plain ViT, still a trained model
    assert judge(labels) == (True, "") and judge(worse) == (True, "")
    for wrong, message in ((np.zeros_like(labels), "below what 500 steps"), (labels[:100], "one prediction per test digit"),
                           (labels + 0.5, "whole-number classes"), ("cat", "one prediction per test digit")):
        right, problem = judge(wrong)
        assert not right and message in problem, problem


def test_misheard_letters_expects_the_forced_alignment_frames_and_refuses_the_frames_argmax():
    """The key of 06.misheard_letters: the frames where the posteriors peak are those of the single best
    alignment of the reference (a Viterbi pass written here, independently of ctc_forward), and the
    probabilities the frames' argmax gets instead are refused."""
    m = ex._speech_misheard()
    probs = m["log_probs"].exp().numpy()
    tokenizer, blank = m["asr"].tokenizer, m["asr"].tokenizer.pad_token_id
    ids = tokenizer(m["text"]).input_ids
    ext = [blank] + [x for i in ids for x in (i, blank)]
    lp = np.log(probs[:, ext])
    score, back = np.full(len(ext), -np.inf), []
    score[:2] = lp[0, :2]
    for t in range(1, len(lp)):
        moves = np.full((3, len(ext)), -np.inf)
        moves[0], moves[1, 1:] = score, score[:-1]
        moves[2, 2:] = np.where([ext[s] != blank and ext[s] != ext[s - 2] for s in range(2, len(ext))], score[:-2], -np.inf)
        back.append(moves.argmax(0))
        score = moves.max(0) + lp[t]
    path = [len(ext) - 1 if score[-1] > score[-2] else len(ext) - 2]
    for step in reversed(back):
        path.append(path[-1] - step[path[-1]])
    path = path[::-1]
    assert m["word"] == max(m["text"].split(), key=len) and len(m["letter_probs"]) == len(m["word"])
    for j, frame in zip(m["letters"], m["frames"]):
        assert path[frame] == 2 * j + 1, (m["text"][j], frame)
    assert ex.check("06.misheard_letters", [probs[t, ids[j]] for t, j in zip(m["frames"], m["letters"])])
    assert not ex.check("06.misheard_letters", [probs[t].max() for t in m["frames"]])
