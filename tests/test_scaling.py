"""Tests of utils.scaling against published numbers and exact counts."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from utils import scaling as sc


# ------------------------------------------------------------ compute and the Chinchilla fits

def test_chinchilla_compute_is_about_5_9e23():
    # 70B parameters on 1.4T tokens (Hoffmann et al. 2022, Table 1)
    assert sc.training_flops(70e9, 1.4e12) == pytest.approx(5.88e23, rel=1e-3)


def test_hoffmann_exponents_match_the_paper():
    # approach 3 reports N_opt ~ C^0.46 and D_opt ~ C^0.54
    assert sc.HOFFMANN_2022.a == pytest.approx(0.46, abs=0.005)
    assert sc.HOFFMANN_2022.b == pytest.approx(0.54, abs=0.005)
    assert sc.HOFFMANN_2022.a + sc.HOFFMANN_2022.b == pytest.approx(1.0)


def test_hoffmann_optimum_at_gopher_budget_is_about_40b():
    # Gopher's budget, 5.76e23 FLOP in Hoffmann et al. 2022: approach 3 gives about 40B
    # parameters, fewer than approaches 1 and 2 (63-67B) and far fewer than Gopher's 280B
    c = 5.76e23
    n_opt, d_opt = sc.compute_optimal(c)
    assert 39e9 < n_opt < 42e9
    assert sc.training_flops(n_opt, d_opt) == pytest.approx(c)


@pytest.mark.parametrize("fit", [sc.HOFFMANN_2022, sc.BESIROGLU_2024])
@pytest.mark.parametrize("c", [1e19, 1e21, 5.8e23, 1e25])
def test_closed_form_optimum_is_the_numerical_minimum(fit, c):
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda logn: sc.chinchilla_loss(10 ** logn, c / (6 * 10 ** logn), fit),
                          bounds=(5, 14), method="bounded", options={"xatol": 1e-7})
    n_opt, _ = sc.compute_optimal(c, fit)
    assert math.log10(n_opt) == pytest.approx(res.x, abs=1e-4)


def test_besiroglu_refit_gives_about_20_tokens_per_parameter():
    # Besiroglu et al. 2024: ~22 tokens per parameter at 1e21 FLOP, ~18 at 5.8e23
    n, d = sc.compute_optimal(1e21, sc.BESIROGLU_2024)
    assert d / n == pytest.approx(22, abs=1)
    n, d = sc.compute_optimal(5.8e23, sc.BESIROGLU_2024)
    assert d / n == pytest.approx(18, abs=1)


def test_chinchilla_loss_values():
    fit = sc.HOFFMANN_2022
    # at infinite N and D the loss tends to E
    assert sc.chinchilla_loss(1e30, 1e30) == pytest.approx(fit.E, abs=1e-3)
    expected = 1.6934 + 406.40 / 70e9 ** 0.33917 + 410.72 / 1.4e12 ** 0.28491
    assert sc.chinchilla_loss(70e9, 1.4e12) == pytest.approx(expected)
    assert 1.9 < expected < 2.0
    # arrays broadcast
    out = sc.chinchilla_loss(np.array([1e9, 1e10]), 2e11)
    assert out.shape == (2,) and out[0] > out[1]


# ------------------------------------------------------------ Kaplan

def test_kaplan_laws_are_power_laws_with_published_slopes():
    for law, key, x in [(sc.kaplan_loss_n, "alpha_N", 1e9), (sc.kaplan_loss_d, "alpha_D", 1e10),
                        (sc.kaplan_loss_c, "alpha_C", 1e21)]:
        slope = (math.log(law(10 * x)) - math.log(law(x))) / math.log(10)
        assert slope == pytest.approx(-sc.KAPLAN[key])
    assert sc.kaplan_loss_n(8.8e13) == pytest.approx(1.0)
    assert sc.kaplan_loss_d(5.4e13) == pytest.approx(1.0)
    # C in FLOP is converted to PF-days: L(1 PF-day) = (3.1e8)^0.05
    assert sc.PF_DAY == 8.64e19
    assert sc.kaplan_loss_c(8.64e19) == pytest.approx(3.1e8 ** 0.05)


def test_kaplan_allocation_grows_n_as_c_to_0_73():
    n1, d1 = sc.kaplan_optimal(1e22)
    n2, d2 = sc.kaplan_optimal(1e23)
    assert math.log10(n2 / n1) == pytest.approx(0.73)
    assert math.log10(d2 / d1) == pytest.approx(0.27)
    n, d = sc.kaplan_optimal(6 * 175e9 * 300e9)  # the anchor (GPT-3) is on the line
    assert (n, d) == (pytest.approx(175e9), pytest.approx(300e9))


# ------------------------------------------------------------ counting parameters

def exact_gpt2_non_embedding(n_layer, d):
    # per block: c_attn 3d^2+3d, attn c_proj d^2+d, c_fc 4d^2+4d, mlp c_proj 4d^2+d, two layer
    # norms 4d; then the final layer norm 2d
    return n_layer * (12 * d * d + 13 * d) + 2 * d


def test_gpt2_small_exact_count():
    from transformers import GPT2LMHeadModel

    with torch.device("meta"):  # shapes only, nothing allocated
        model = GPT2LMHeadModel(sc.gpt2_config(12, 768, 12))
    counts = sc.count_parameters(model)
    assert counts["total"] == 124_439_808  # GPT-2 small, LM head tied to wte
    assert counts["embedding"] == 50257 * 768 + 1024 * 768
    assert counts["non_embedding"] == 85_056_000 == exact_gpt2_non_embedding(12, 768)
    approx = sc.non_embedding_approx(12, 768)
    assert approx == 84_934_656
    assert abs(approx - counts["non_embedding"]) / counts["non_embedding"] < 0.002


@pytest.mark.parametrize("shape", [(1, 16, 2), (2, 64, 4), (4, 128, 4), (3, 96, 4)])
def test_count_matches_formula_for_small_configs(shape):
    from transformers import GPT2LMHeadModel

    n_layer, d, heads = shape
    model = GPT2LMHeadModel(sc.gpt2_config(n_layer, d, heads, vocab_size=75, n_positions=64))
    counts = sc.count_parameters(model)
    assert counts["non_embedding"] == exact_gpt2_non_embedding(n_layer, d)
    assert counts["embedding"] == 75 * d + 64 * d
    # 12 L d^2 leaves out the biases and layer norms: (13 L + 2) d parameters
    assert counts["non_embedding"] - sc.non_embedding_approx(n_layer, d) == (13 * n_layer + 2) * d


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="n \\(parameters\\)"):
        sc.training_flops(-1, 10)
    with pytest.raises(ValueError, match="d \\(tokens\\)"):
        sc.chinchilla_loss(1e9, 0)
    with pytest.raises(ValueError, match="n_layer"):
        sc.non_embedding_approx(2.5, 64)
    with pytest.raises(ValueError, match="divisible"):
        sc.gpt2_config(2, 50, 4)
    with pytest.raises(TypeError, match="ChinchillaFit"):
        sc.compute_optimal(1e21, fit={"E": 1})
    with pytest.raises(TypeError, match="transformers model"):
        sc.count_parameters(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="finite"):
        sc.kaplan_loss_n(float("nan"))


# ------------------------------------------------------------ fitting

def test_offset_power_law_recovers_known_parameters():
    rng = np.random.default_rng(0)
    x = np.logspace(3, 6, 8)
    y = 1.5 + (1e4 / x) ** 0.3
    fit = sc.fit_offset_power_law(x, y * (1 + 1e-4 * rng.standard_normal(x.size)))
    assert fit["E"] == pytest.approx(1.5, rel=0.01)
    assert fit["alpha"] == pytest.approx(0.3, rel=0.02)
    assert fit["x_c"] == pytest.approx(1e4, rel=0.1)
    assert fit["alpha_err"] < 0.01
    assert fit["predict"](1e7) == pytest.approx(1.5 + (1e4 / 1e7) ** 0.3, rel=1e-3)
    with pytest.raises(ValueError, match="at least 4"):
        sc.fit_offset_power_law(x[:3], y[:3])


def test_pure_power_law_fit():
    x = np.logspace(3, 6, 6)
    fit = sc.fit_power_law(x, (8.8e13 / x) ** 0.076)
    assert fit["alpha"] == pytest.approx(0.076)
    assert fit["x_c"] == pytest.approx(8.8e13, rel=1e-6)
    assert fit["alpha_err"] < 1e-9
    assert fit["predict"](1e9) == pytest.approx(sc.kaplan_loss_n(1e9))
    with pytest.raises(ValueError, match="finite and > 0"):
        sc.fit_power_law(x, -x)


def test_fit_loss_curve_uses_only_the_early_part():
    steps = np.arange(1, 201)
    losses = 2.0 + (50 / steps) ** 0.5
    losses[100:] = 0.0 + 1e-3  # the late part must not be seen
    fit = sc.fit_loss_curve(steps, losses, upto=100)
    assert fit["predict"](200) == pytest.approx(2.5, rel=1e-3)
    with pytest.raises(ValueError, match="only 2 points"):
        sc.fit_loss_curve(steps, losses, upto=2)


def test_doubling_time_of_a_yearly_doubling():
    dates = pd.to_datetime(["2018-01-01", "2019-01-01", "2020-01-01", "2021-01-01"])
    months, line = sc.doubling_time(dates, [1e8, 2e8, 4e8, 8e8])
    assert months == pytest.approx(12.0, rel=0.01)
    assert line(pd.to_datetime(["2022-01-01"]))[0] == pytest.approx(1.6e9, rel=0.01)
    with pytest.raises(ValueError, match="do not grow"):
        sc.doubling_time(dates, [8e8, 4e8, 2e8, 1e8])


# ------------------------------------------------------------ data

def test_model_sizes_table():
    df = sc.load_model_sizes()
    assert df.source.notna().all()
    sizes = dict(zip(df.name, df.parameters))
    assert sizes["Switch-C"] == 1.571e12  # the book's list is ten times too large
    assert sizes["GPT"] == 117e6
    for name in ["Gopher", "Chinchilla", "PaLM", "LLaMA-65B", "Llama 3.1 405B", "DeepSeek-V3"]:
        assert name in sizes
    moe = set(df.name[df.moe])
    assert {"Switch-C", "GLaM", "GShard", "DeepSeek-V3"} <= moe
    assert df.set_index("name").loc["DeepSeek-V3", "active_parameters"] == 37e9
    assert df.date.is_monotonic_increasing


def test_char_windows():
    text = "abcabcabcab"
    vocab = sc.char_vocab(text)
    assert vocab == {"a": 0, "b": 1, "c": 2}
    ds = sc.CharWindows(text, vocab, 3)
    assert len(ds) == 3
    assert ds[1]["input_ids"].tolist() == [0, 1, 2]
    assert ds[1]["labels"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        sc.CharWindows("abz", vocab, 2)
    with pytest.raises(ValueError, match="block_size"):
        sc.CharWindows("ab", vocab, 3)


def test_char_tokenizer_matches_the_vocabulary():
    vocab = sc.char_vocab("It is a truth\nuniversally acknowledged.")
    tok = sc.char_tokenizer(vocab)
    line = "a truth\nacknowledged"
    ids = tok(line)["input_ids"]
    assert ids == [vocab[ch] for ch in line]  # one id per character, the newline included
    assert tok.decode(ids) == line
    with pytest.raises(ValueError, match="empty"):
        sc.char_tokenizer({})


def test_corpus_is_the_shipped_novel():
    from utils import data_path

    text = data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")
    assert text.startswith("PRIDE AND PREJUDICE")
    assert "It is a truth universally acknowledged" in text
    assert 600_000 < len(text) < 700_000
    assert len(sc.char_vocab(text)) == 75


def test_run_sweep_trains_below_the_uniform_guess():
    # two tiny sizes, 30 steps: the held-out loss must fall below log(vocabulary), the loss of
    # a uniform guess, and the table must carry the exact counts
    from utils import data_path

    text = data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")[:60_000]
    results, histories, models = sc.run_sweep(text, [(1, 16, 2), (2, 32, 4)], steps=30, batch_size=8,
                                      block_size=32, lr=3e-3, eval_every=10)
    vocab = len(sc.char_vocab(text))
    assert list(results.non_embedding) == [exact_gpt2_non_embedding(1, 16), exact_gpt2_non_embedding(2, 32)]
    assert (results.val_loss < math.log(vocab)).all()
    assert list(results.tokens) == [30 * 8 * 32] * 2
    assert list(histories["L2-d32"].dropna(subset=["eval_loss"]).step) == [10, 20, 30]
    curves = sc.compute_curves(results, histories, 8 * 32)
    frontier = sc.compute_frontier(curves, n_bins=5)
    assert (frontier.eval_loss.diff().dropna() <= 0).all()  # the envelope never rises
    assert sc.loss_on(models["L2-d32"], sc.CharWindows(text[-3200:], sc.char_vocab(text), 32)) < math.log(vocab)
    with pytest.raises(ValueError, match="no sizes"):
        sc.run_sweep(text, [], steps=1, batch_size=1, block_size=8, lr=1e-3)
