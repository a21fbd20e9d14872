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
    n, d = sc.kaplan_optimal(6 * 175e9 * 300e9, anchor=(175e9, 300e9))  # an anchor is on its line
    assert (n, d) == (pytest.approx(175e9), pytest.approx(300e9))


def test_kaplan_allocation_uses_the_papers_constant():
    # Kaplan et al. Table 6: N_opt = 1.3e9 C_min^0.73 (C_min in PF-days), so 1.3e9 at one PF-day
    n, d = sc.kaplan_optimal(sc.PF_DAY, critical_batch=False)
    assert n == pytest.approx(1.3e9)
    assert 6 * n * d == pytest.approx(sc.PF_DAY)
    # Hoffmann et al. 2022, appendix D.4: Kaplan's law gives 4.68B parameters at 1e21 FLOP
    # (training at the critical batch size, C = 2 C_min)
    assert sc.kaplan_optimal(1e21)[0] == pytest.approx(4.68e9, rel=2e-3)


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


def test_growth_per_year_interval():
    dates = pd.to_datetime(["2018-01-01", "2019-01-01", "2020-01-01", "2021-01-01"])
    exact = sc.growth_per_year(dates, [1e8, 2e8, 4e8, 8e8])
    assert exact["factor"] == pytest.approx(2.0, rel=0.01)
    assert exact["low"] == pytest.approx(2.0, rel=0.01) and exact["high"] == pytest.approx(2.0, rel=0.01)
    noisy = sc.growth_per_year(dates, [1e8, 3e8, 1e8, 2e8])  # no clear trend: the interval holds 1
    assert noisy["low"] < 1 < noisy["high"]
    with pytest.raises(ValueError, match="three dates"):
        sc.growth_per_year(dates[:2], [1e8, 2e8])


def test_allocation_table_matches_compute_optimal():
    runs = pd.DataFrame({"name": ["GPT-3", "toy"], "parameters": [175e9, 1e9], "training_tokens": [300e9, 20e9],
                         "training_flop": [3.14e23, float("nan")]})
    table = sc.allocation_table(runs)
    assert table.loc["GPT-3", "C from"] == "paper" and table.loc["toy", "C from"] == "6ND"
    assert table.loc["toy", "C (FLOP)"] == pytest.approx(6 * 1e9 * 20e9)
    n_opt = sc.compute_optimal(3.14e23, sc.BESIROGLU_2024)[0]
    assert table.loc["GPT-3", "N/N_opt 2024"] == pytest.approx(175e9 / n_opt, abs=0.005)


def test_gpt2_config_special_tokens_inside_the_vocabulary():
    config = sc.gpt2_config(2, 16, 2, vocab_size=75)
    assert config.bos_token_id == config.eos_token_id == 74
    assert sc.gpt2_config(2, 16, 2).eos_token_id == 50256  # GPT-2's own


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
    # the full FLOP count exceeds 6ND (attention scores and output head), most for the smallest
    assert (results.flops_counted > results.flops).all()
    ratio = results.flops_counted / results.flops
    assert ratio.iloc[0] > ratio.iloc[1]
    frontier_full = sc.compute_frontier(curves, n_bins=5, x="flops_counted")
    assert frontier_full.flops.max() == pytest.approx(curves.flops_counted.max())
    # every frontier point is a real evaluation (on a run's curve), not a bin edge
    on_curves = curves.merge(frontier_full, left_on=["flops_counted", "eval_loss", "name"],
                             right_on=["flops", "eval_loss", "name"])
    assert len(on_curves) == len(frontier_full)
    reached = sc.tokens_to_reach(curves, float(curves.eval_loss.max()) + 1)
    assert (reached == curves.tokens.min()).all()  # a loss above every point: reached at once
    assert np.isnan(sc.tokens_to_reach(curves, 0.0)).all()
    # the one-call figures draw one line per size plus their overlays
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fit_c = sc.fit_power_law(frontier_full.flops, frontier_full.eval_loss)
    ax = sc.plot_compute_frontier(curves, frontier_full, fit_c)
    assert [line.get_label() for line in ax.get_lines()][:2] == ["L1-d16", "L2-d32"]
    mid = float(curves.eval_loss.median())
    ax = sc.plot_sample_efficiency(curves, mid, sc.tokens_to_reach(curves, mid))
    assert "target loss" in ax.get_legend_handles_labels()[1][-1]
    plt.close("all")
    with pytest.raises(ValueError, match="no sizes"):
        sc.run_sweep(text, [], steps=1, batch_size=1, block_size=8, lr=1e-3)


def test_run_sweep_in_two_processes_gives_the_numbers_of_one_after_another():
    from utils import data_path

    text = data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")[:20_000]
    settings = dict(steps=6, batch_size=4, block_size=16, lr=3e-3, eval_every=3)
    sizes = [(1, 8, 2), (2, 16, 2), (1, 12, 2)]
    one, one_histories, _ = sc.run_sweep(text, sizes, **settings)
    two, two_histories, two_models = sc.run_sweep(text, sizes, workers=2, **settings)
    assert list(two.name) == ["L1-d8", "L2-d16", "L1-d12"]  # the order of `sizes`, though the largest ran apart
    pd.testing.assert_frame_equal(one.drop(columns="seconds"), two.drop(columns="seconds"))
    for name, history in one_histories.items():
        pd.testing.assert_frame_equal(history.drop(columns="seconds"), two_histories[name].drop(columns="seconds"))
    assert sc.loss_on(two_models["L2-d16"], sc.CharWindows(text[-1600:], sc.char_vocab(text), 16)) > 0
    with pytest.raises(ValueError, match="workers"):
        sc.run_sweep(text, sizes, workers=0, **settings)


# ------------------------------------------------------------ counting FLOPs


@pytest.mark.parametrize("shape", [(1, 16, 2), (2, 32, 4), (3, 48, 4)])
def test_flop_formula_matches_flop_counter(shape):
    # torch's FlopCounterMode, over a forward with the loss and a backward, counts exactly
    # 3 x (weight matrices + full attention scores + output head) per token
    from transformers import GPT2LMHeadModel

    n_layer, d_model, n_head = shape
    torch.manual_seed(0)
    model = GPT2LMHeadModel(sc.gpt2_config(n_layer, d_model, n_head, vocab_size=75, n_positions=32))
    ids = torch.randint(0, 75, (4, 32))
    measured = sc.measure_training_flops(model, ids)
    expected = sc.flops_per_token(n_layer, d_model, 32, 75)
    assert measured == expected["training"] * ids.numel()
    assert expected["weights"] == 2 * sc.non_embedding_approx(n_layer, d_model)
    # Kaplan et al. Table 1: C_forward = 2N + 2 n_layer n_ctx d_attn (causal half of the scores)
    half = sc.flops_per_token(n_layer, d_model, 32, 75, causal_half=True)
    assert half["attention"] == 2 * n_layer * 32 * d_model


def test_embedding_parameters_of_gpt2_small():
    # 50257 x 768 token embedding plus 1024 x 768 positions = 39,383,808 (count_parameters above)
    assert sc.embedding_parameters(768, 50257, 1024) == 39_383_808
    with pytest.raises(ValueError, match="d_model"):
        sc.embedding_parameters(0, 10)


# ------------------------------------------------------------ the cost of scale

def test_gpt3_compute_and_the_books_cost_estimate():
    # Brown et al. 2020, Table D.1: 3.14e23 FLOP to train GPT-3 175B (6ND with 300B tokens: 3.15e23)
    assert sc.training_flops(175e9, 300e9) == pytest.approx(3.14e23, rel=5e-3)
    # the book's $4.6M (Lambda Labs): 28 TFLOPS per V100 -> 355 GPU-years, at about $1.5 an hour
    budget = sc.training_budget(3.14e23, peak_flops=28e12, utilization=1.0, price_per_device_hour=1.5)
    assert budget["device_years"] == pytest.approx(355, abs=1)
    assert budget["cost"] == pytest.approx(4.6e6, rel=0.02)


def test_mixed_precision_adam_and_zero_match_the_zero_paper():
    # Rajbhandari et al. 2019: 16 bytes per parameter; their 7.5B example on 64 devices:
    # 120 GB baseline, 31.4 GB (stage 1), 16.6 GB (stage 2), 1.9 GB (stage 3)
    base = sc.training_memory(1)
    assert (base["weights"], base["gradients"], base["optimizer"], base["total"]) == (2, 2, 12, 16)
    got = [sc.training_memory(7.5e9, zero_stage=z, n_devices=64)["total"] / 1e9 for z in range(4)]
    assert got == [pytest.approx(120), pytest.approx(31.4, abs=0.05), pytest.approx(16.6, abs=0.05),
                   pytest.approx(1.9, abs=0.05)]
    # just to hold Llama 3.1 405B's state: 405e9 x 16 bytes over 80 GB devices
    assert sc.devices_to_hold(405e9, 80e9) == 81
    with pytest.raises(ValueError, match="zero_stage"):
        sc.training_memory(1e9, zero_stage=4)


def test_llama3_405b_budget_and_gpu_hours():
    # Llama 3 paper (arXiv:2407.21783): 405B parameters, 15.6T tokens, 3.8e25 FLOP, 38-43% MFU
    # on H100s; the Llama 3.1 model card: 30.84M H100-80GB GPU-hours for the 405B model
    assert sc.training_flops(405e9, 15.6e12) == pytest.approx(3.8e25, rel=0.01)
    h100 = sc.ACCELERATORS["H100"]["peak_flops"]
    low = sc.training_budget(3.8e25, peak_flops=h100, utilization=0.43)["device_hours"]
    high = sc.training_budget(3.8e25, peak_flops=h100, utilization=0.38)["device_hours"]
    assert 24e6 < low < high < 30.84e6  # the card's hours also cover what pre-training alone does not
    days = sc.training_budget(3.8e25, peak_flops=h100, utilization=0.4, n_devices=16384)["days"]
    assert 60 < days < 75
    with pytest.raises(ValueError, match="utilization"):
        sc.training_budget(1e20, peak_flops=1e12, utilization=1.5)


def test_inference_flops_and_the_inference_aware_optimum():
    assert sc.inference_flops(7e9, 1000) == 2 * 7e9 * 1000
    n_opt, d_opt = sc.compute_optimal(5.76e23)
    target = sc.chinchilla_loss(n_opt, d_opt)
    # nothing to serve: the training-compute optimum of the same loss
    none = sc.inference_aware_optimal(target, 0)
    assert none["n"] == pytest.approx(n_opt, rel=1e-3)
    assert none["total_flops"] == pytest.approx(5.76e23, rel=1e-5)
    # Sardana et al.: with many tokens to serve, a smaller model trained longer costs less overall
    served = sc.inference_aware_optimal(target, 1e13)
    assert served["n"] < n_opt and served["tokens_per_param"] > none["tokens_per_param"]
    assert float(sc.chinchilla_loss(served["n"], served["d"])) == pytest.approx(target, abs=1e-6)
    assert served["total_flops"] < 5.76e23 + sc.inference_flops(n_opt, 1e13)
    with pytest.raises(ValueError, match="irreducible"):
        sc.inference_aware_optimal(1.0, 0)


def test_effective_data_of_repeated_epochs():
    # Muennighoff et al. 2023: one epoch is fresh data; four are worth almost four (about 3.7)
    assert sc.effective_data(1e9, 1) == pytest.approx(1e9)
    four = sc.effective_data(1.0, 4)
    assert 3.6 < four < 4
    # many repetitions saturate at U (1 + R*)
    assert sc.effective_data(1.0, 1e6) == pytest.approx(16.4, rel=1e-3)
    with pytest.raises(ValueError, match="epochs"):
        sc.effective_data(1.0, 0.5)


def test_ngram_loss_against_hand_counts():
    # unigram with add-k: train "aab" -> P(a) = (2 + 1) / (3 + 2), P(b) = (1 + 1) / (3 + 2)
    vocab = {"a": 0, "b": 1}
    expected = -(math.log(3 / 5) + math.log(2 / 5)) / 2
    assert sc.ngram_loss("aab", "ab", n=1, k=1.0, vocab=vocab) == pytest.approx(expected)
    # bigram: after "a" the training text has "a" once and "b" once -> P(b | a) = (1 + 1) / (2 + 2)
    assert sc.ngram_loss("aab", "ab", n=2, k=1.0, vocab=vocab) == pytest.approx(-math.log(2 / 4))
    # a text that repeats is predicted almost perfectly by a long enough context
    assert sc.ngram_loss("abcabcabc" * 20, "abcabc", n=3, k=1e-3) < 0.01
    with pytest.raises(ValueError, match="not in the vocabulary"):
        sc.ngram_loss("aab", "abz", n=1, vocab=vocab)


def test_ngram_baseline_chooses_on_the_development_slice():
    from utils import data_path

    text = data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")[:100_000]
    table, best = sc.ngram_baseline(text, orders=(1, 2, 3), ks=(0.1, 1.0))
    assert len(table) == 6
    assert (best["n"], best["k"]) == tuple(table.loc[table.dev_loss.idxmin(), ["n", "k"]])
    assert best["val_loss"] < math.log(len(sc.char_vocab(text)))



def test_repeated_sampling_matches_closed_forms():
    table = sc.repeated_sampling([0.0, 0.2, 0.9], [1, 3, 100])
    assert table.loc[1, "coverage (pass@k)"] == pytest.approx(1.1 / 3)
    assert table.loc[3, "coverage (pass@k)"] == pytest.approx((1 - 0.8 ** 3 + 1 - 0.1 ** 3) / 3)
    # majority of 3 = at least 2 right: 3 p^2 (1 - p) + p^3
    worst = "majority vote, one wrong answer"
    assert table.loc[3, worst] == pytest.approx(sum(3 * p ** 2 * (1 - p) + p ** 3 for p in [0, 0.2, 0.9]) / 3)
    assert table.loc[100, worst] == pytest.approx(1 / 3, abs=1e-6)  # only the p > 0.5 problem is won
    # wrong answers spread over 10: one sample wins with probability p; many samples win every problem
    # whose p is above each wrong answer's (1 - p) / 10, here p = 0.2 and 0.9 but not 0
    spread = sc.repeated_sampling([0.0, 0.2, 0.9], [1, 300], wrong_answers=10, draws=2000)
    assert spread.loc[1, "plurality vote, 10 wrong answers"] == pytest.approx(1.1 / 3, abs=0.01)
    assert spread.loc[300, "plurality vote, 10 wrong answers"] == pytest.approx(2 / 3, abs=1e-3)
    # with one wrong answer and an odd k the plurality is the majority
    one = sc.repeated_sampling([0.3, 0.6], [5], wrong_answers=1, draws=20000)
    assert one.loc[5, "plurality vote, 1 wrong answers"] == pytest.approx(one.loc[5, worst], abs=0.01)
    with pytest.raises(ValueError, match="probabilities"):
        sc.repeated_sampling([1.2], [1])
    with pytest.raises(ValueError, match="wrong_answers"):
        sc.repeated_sampling([0.5], [1], wrong_answers=0)


def test_shape_and_embedding_tables_count_like_the_models():
    table = sc.shape_table([(2, 16, 2)], vocab_size=75, block_size=64)
    assert table.loc[0, "embedding"] == 75 * 16 + 64 * 16
    assert table.loc[0, "non_embedding"] == 2 * (12 * 16 ** 2 + 13 * 16) + 2 * 16
    share = sc.embedding_share([(12, 768)])
    assert share.loc[0, "all / non-embedding"] == pytest.approx((84934656 + 768 * (50257 + 1024)) / 84934656, abs=0.01)


def test_seed_table_gives_a_t_interval_for_the_mean():
    table = sc.seed_table({0: {"a": 1.0}, 1: {"a": 2.0}, 2: {"a": 3.0}})
    assert table.loc["mean", "a"] == 2.0 and table.loc["sd", "a"] == 1.0
    assert table.loc["95% high", "a"] == pytest.approx(2.0 + 4.302653 / math.sqrt(3), rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        sc.seed_table({0: {"a": 1.0}})


def test_parallel_layout_llama3_table4():
    # Llama 3 paper, Table 4: every layout multiplies out to its GPU count and to 16M tokens per step
    for row in sc.LLAMA3_405B_LAYOUTS:
        out = sc.parallel_layout(405e9, n_layers=126, d_model=16384, kv_dim=1024, seq_len=row["seq_len"],
                                 batch_per_dp=row["batch_per_dp"], tp=row["tp"], cp=row["cp"], pp=row["pp"],
                                 dp=row["dp"], zero_stage=3)
        assert out["gpus"] == row["gpus"]
        assert out["tokens_per_step"] == 16 * 2 ** 20
        assert out["params_per_gpu"] == pytest.approx(405e9 / 128)
        # TP x PP alone leaves 16 bytes x 3.16B = 50.6 GB of state per GPU; FSDP over DP x CP removes most
        assert out["memory"]["total"] == pytest.approx(16 * 405e9 / 128 / (row["dp"] * row["cp"]))
        assert (out["comm"]["context"] > 0) == (row["cp"] > 1)


def test_parallel_layout_megatron_8b():
    # Shoeybi et al. 2019: 8.3B parameters (72 layers, width 3072) with 8-way tensor parallelism and 64-way
    # data parallelism on 512 32-GB V100s: one GPU's share of the Adam state fits, the whole model's does not
    out = sc.parallel_layout(8.3e9, n_layers=72, d_model=3072, seq_len=1024, batch_per_dp=8, tp=8, dp=64)
    assert out["gpus"] == 512
    assert out["memory"]["total"] == pytest.approx(16 * 8.3e9 / 8) and out["memory"]["total"] < 32e9
    assert sc.training_memory(8.3e9)["total"] > 32e9
    # 4 all-reduces of b s h values per layer over 8 GPUs: 2 x 7/8 of the bytes each
    assert out["comm"]["tensor"] == pytest.approx(4 * 72 * 8 * 1024 * 3072 * 2 * 2 * 7 / 8)
    assert out["comm"]["pipeline"] == 0 and out["bubble"] == 0


def test_parallel_layout_collectives():
    kw = dict(n_layers=8, d_model=64, seq_len=32, batch_per_dp=4)
    plain, zero3 = (sc.parallel_layout(1e6, dp=4, zero_stage=z, **kw) for z in (0, 3))
    assert zero3["comm"]["data"] == pytest.approx(1.5 * plain["comm"]["data"])  # ZeRO section 7: 3 psi vs 2 psi
    assert plain["comm"]["data"] == pytest.approx(2 * 1e6 * 2 * 3 / 4)
    assert sc.parallel_layout(1e6, dp=1, **kw)["comm"]["data"] == 0
    piped = sc.parallel_layout(1e6, pp=4, micro_batches=12, **kw)
    assert piped["bubble"] == pytest.approx(3 / 15) and piped["comm"]["pipeline"] == 2 * 4 * 32 * 64 * 2
    assert sc.parallel_layout(1e6, pp=3, **kw)["comm"]["tensor"] == 0  # uneven stages are allowed
    with pytest.raises(ValueError, match="seq_len"):
        sc.parallel_layout(1e6, cp=3, **kw)
    with pytest.raises(ValueError, match="tp"):
        sc.parallel_layout(1e6, tp=0, **kw)


def test_seed_interval_formats_the_seed_table():
    table = sc.seed_table({0: {"a": 1.0}, 1: {"a": 2.0}, 2: {"a": 3.0}})
    assert sc.seed_interval(table, "a", 2) == "2.00 [-0.48, 4.48]"  # t(0.975, 2) = 4.303, sd 1, sqrt(3)
    with pytest.raises(ValueError, match="no column 'b'"):
        sc.seed_interval(table, "b")


def test_loss_vs_size_keeps_the_axis_on_the_losses_when_the_floor_is_far_below():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.array([1e4, 2e4, 5e4, 1e5, 2e5, 5e5])
    results = pd.DataFrame({"non_embedding": n, "val_loss": 3.0 * (1e4 / n) ** 0.04})
    pure = sc.fit_power_law(results.non_embedding, results.val_loss)
    fit = {"E": 1e-6, "alpha": 0.04, "alpha_err": 0.3, "predict": pure["predict"]}
    ax = sc.plot_loss_vs_size(results, pure, fit, steps=300)
    assert ax.get_ylim()[0] > 2.0 and any("below the axis" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close("all")


def test_moe_costs_price_active_and_total_parameters():
    table = sc.moe_costs({"V3": (671e9, 37e9, 14.8e12), "M": (47e9, 13e9, None)})
    assert table.loc["V3", "6 active D"] == pytest.approx(6 * 37e9 * 14.8e12)
    assert table.loc["V3", "6 total D"] / table.loc["V3", "6 active D"] == pytest.approx(671 / 37)
    assert table.loc["M", "GFLOP/token"] == pytest.approx(26) and table.loc["M", "bf16 GB"] == pytest.approx(94)
    assert np.isnan(table.loc["M", "6 active D"])
