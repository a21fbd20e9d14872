"""Tests of utils.associative_recall: the task's sequences, the delta rule against its matrix form,
causality of every model kind, and the record's summaries."""
import numpy as np
import pytest
import torch

from utils import associative_recall as ar


def test_task_queries_every_key_once_with_its_value():
    task = ar.RecallTask(5, n_keys=12, n_values=7)
    keys, values, is_query, targets = task.batch(4, torch.Generator().manual_seed(0))
    assert keys.shape == values.shape == (4, 10) and is_query.tolist() == [False] * 5 + [True] * 5
    for b in range(4):
        pairs = dict(zip(keys[b, :5].tolist(), values[b, :5].tolist()))
        assert len(pairs) == 5  # distinct keys
        assert sorted(keys[b, 5:].tolist()) == sorted(pairs)  # every key asked once
        assert targets[b].tolist() == [pairs[k] for k in keys[b, 5:].tolist()]
    with pytest.raises(ValueError, match="n_keys >= pairs"):
        ar.RecallTask(20, n_keys=12)
    with pytest.raises(ValueError, match="pairs must be a positive integer"):
        ar.RecallTask(0)


def test_delta_rule_equals_its_matrix_form():
    """S_t = (I - beta_t k_t k_t^T) S_(t-1) + beta_t k_t v_t^T, written with matrices, per batch and head."""
    gen = torch.Generator().manual_seed(1)
    q, k = (torch.randn(2, 3, 9, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    k = torch.nn.functional.normalize(k, dim=-1)
    v = torch.randn(2, 3, 9, 5, generator=gen, dtype=torch.float64)
    beta = torch.rand(2, 3, 9, generator=gen, dtype=torch.float64)
    got = ar.delta_rule(q, k, v, beta)
    for b in range(2):
        for h in range(3):
            S = torch.zeros(4, 5, dtype=torch.float64)
            for t in range(9):
                kt = k[b, h, t][:, None]
                S = (torch.eye(4, dtype=torch.float64) - beta[b, h, t] * kt @ kt.T) @ S + beta[b, h, t] * kt @ v[b, h, t][None]
                torch.testing.assert_close(got[b, h, t], S.T @ q[b, h, t], rtol=0, atol=1e-12)


def test_delta_rule_stores_orthogonal_keys_exactly_and_overwrites():
    """With beta = 1 and d orthogonal unit keys, each key reads back its own value, also after a key is
    written twice (the second value replaces the first); the outer-product sum would add them."""
    d = 6
    keys = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64))[0].T
    keys = torch.cat([keys, keys[:1]])  # key 0 again, with a new value
    values = torch.randn(d + 1, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ones = torch.ones(d + 1, dtype=torch.float64)
    read = ar.delta_rule(keys[None], keys[None], values[None], ones[None])[0, -1]  # all written, read key 0
    torch.testing.assert_close(read, values[-1], rtol=0, atol=1e-12)
    S = torch.zeros(d, 3, dtype=torch.float64)
    for t in range(d + 1):
        S = S + keys[t][:, None] * (values[t] - S.T @ keys[t])[None]
    torch.testing.assert_close(S.T @ keys.T[:, 1:d], values[1:d].T, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ar.KINDS + (ar.HYBRID, ar.SOFTMAX_HEAD))
def test_every_kind_is_causal_and_learns_a_little(kind):
    model = ar.RecallModel(kind, n_keys=16, n_values=8, d_model=16, heads=2, seed=0)
    task = ar.RecallTask(4, n_keys=16, n_values=8)
    keys, values, is_query, _ = task.batch(3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = model(keys, values, is_query)
        changed = keys.clone()
        changed[:, 6:] = (changed[:, 6:] + 1) % 16
        b = model(changed, values, is_query)
    assert a.shape == (3, 8, 8)
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=1e-6)
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="kind must be one of"):
        ar.RecallModel("lstm")


def test_state_numbers():
    assert ar.RecallModel("softmax", d_model=64, heads=2).state_numbers() is None
    assert ar.RecallModel(ar.HYBRID, d_model=64, heads=2).state_numbers() == 32 * 32 + 32
    assert ar.cache_numbers("softmax", 64, 64) == 2 * 64 * 64 == 2 * ar.cache_numbers(ar.HYBRID, 64, 64)
    assert ar.cache_numbers("delta", 64, 64) == 0
    with pytest.raises(ValueError, match="halves"):
        ar.RecallModel(ar.HYBRID, d_model=63, heads=3)


def test_hybrid_heads_are_a_softmax_head_and_a_linear_head():
    """With the same weights, the hybrid's first head is the softmax model's first head and its second
    the elu+1 model's second: the two outputs differ only through the heads each half uses."""
    models = {kind: ar.RecallModel(kind, n_keys=16, n_values=8, d_model=16, heads=2, seed=0)
              for kind in ("softmax", "linear", ar.HYBRID)}
    task = ar.RecallTask(4, n_keys=16, n_values=8)
    keys, values, is_query, _ = task.batch(3, torch.Generator().manual_seed(0))
    heads = {}
    for kind, model in models.items():  # capture the input of the output projection: the heads side by side
        model.out.register_forward_hook(lambda m, args, out, kind=kind: heads.__setitem__(kind, args[0]))
        with torch.no_grad():
            model(keys, values, is_query)
    torch.testing.assert_close(heads[ar.HYBRID][..., :8], heads["softmax"][..., :8])
    torch.testing.assert_close(heads[ar.HYBRID][..., 8:], heads["linear"][..., 8:])
    assert ar.RecallModel("linear", d_model=64, heads=2).state_numbers() == 2 * (32 * 32 + 32)
    assert ar.RecallModel("delta", d_model=64, heads=2).state_numbers() == 2 * 32 * 32


def test_softmax_head_alone_is_the_hybrid_without_its_linear_head():
    """Same seed, same weights: the control's first head is the hybrid's softmax head, its second adds nothing;
    it keeps half the softmax model's cache and no state."""
    models = {kind: ar.RecallModel(kind, n_keys=16, n_values=8, d_model=16, heads=2, seed=0)
              for kind in (ar.HYBRID, ar.SOFTMAX_HEAD)}
    for a, b in zip(*(m.parameters() for m in models.values())):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    keys, values, is_query, _ = ar.RecallTask(4, n_keys=16, n_values=8).batch(3, torch.Generator().manual_seed(0))
    heads = {}
    for kind, model in models.items():
        model.out.register_forward_hook(lambda m, args, out, kind=kind: heads.__setitem__(kind, args[0]))
        with torch.no_grad():
            model(keys, values, is_query)
    torch.testing.assert_close(heads[ar.SOFTMAX_HEAD][..., :8], heads[ar.HYBRID][..., :8])
    assert (heads[ar.SOFTMAX_HEAD][..., 8:] == 0).all()
    assert models[ar.SOFTMAX_HEAD].state_numbers() is None and ar.cache_numbers(ar.SOFTMAX_HEAD, 64, 64) == 64 * 64


def test_interval_over_sequences_is_one_sided_where_no_sequence_holds_an_error():
    assert ar.interval_over_sequences(np.ones(256)) == "≥ 98.8% (one-sided)"  # 1 - 0.05^(1/256) = 1.16%
    low, high = ar.interval_over_sequences(np.r_[np.ones(200), np.full(56, 0.5)]).split(" to ")
    assert float(low.rstrip("%")) < 89.1 < float(high.rstrip("%"))


def test_recall_table_and_paired_comparison_read_the_record():
    record = {"settings": {"d_model": 16, "heads": 2}, "runs": [{"kind": kind, "pairs": 4, "seed": s, "state_numbers": None if kind == "softmax" else 10,
                        "test_correct": [4] * 20 if kind == "softmax" else [2, 3] * 10}
                       for kind in ("softmax", "linear") for s in range(3)]}
    table = ar.recall_table(record)
    assert table.set_index("kind").recall.to_dict() == {"softmax": 1.0, "linear": pytest.approx(0.625)}
    assert table.set_index("kind")["state numbers"].to_dict() == {"softmax": 2 * 4 * 16, "linear": 10}
    assert table.set_index("kind")["95% interval over sequences"]["softmax"] == "≥ 86.1% (one-sided)"  # 20 sequences: 0.05^(1/20)
    comparison = ar.paired_recall(record, "softmax", "linear", 4)
    assert comparison.difference == pytest.approx(0.375) and comparison.p_value < 0.01
    with pytest.raises(ValueError, match="no runs of 'delta'"):
        ar.paired_recall(record, "delta", "linear", 4)


def test_recall_on_groups_queries_by_sequence():
    model, task, _ = ar.train_recall("softmax", 3, steps=2, batch_size=4, d_model=16, n_keys=8, n_values=4)
    correct, groups = ar.recall_on(model, task, 5)
    assert correct.shape == groups.shape == (15,) and np.array_equal(np.unique(groups), np.arange(5))


def test_taylor_features_give_the_second_order_expansion_of_exp():
    """Based's map: phi(q) . phi(k) = 1 + s + s^2 / 2 with s = q.k / sqrt(d), written out by hand."""
    gen = torch.Generator().manual_seed(4)
    q, k = (torch.randn(5, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    s = (q * k).sum(-1) / 8 ** 0.5
    got = (ar.taylor_features(q) * ar.taylor_features(k, is_query=False)).sum(-1)
    torch.testing.assert_close(got, 1 + s + s * s / 2, rtol=0, atol=1e-12)
    assert ar.taylor_features(q).shape == (5, 1 + 8 + 64)
    model = ar.RecallModel("taylor", n_keys=16, n_values=8, d_model=16, heads=2)
    assert model.state_numbers() == 2 * (1 + ar.TAYLOR_DIM + ar.TAYLOR_DIM ** 2) * (8 + 1)


def test_train_recall_records_validation_recall_without_changing_training():
    """The validation curve is measured every eval_every steps and at the last step, and measuring it does
    not change what the model learns (its own generator; no dropout)."""
    settings = dict(steps=5, batch_size=4, d_model=16, n_keys=8, n_values=4)
    model, task, _ = ar.train_recall("linear", 3, eval_every=2, eval_sequences=6, **settings)
    plain, _, _ = ar.train_recall("linear", 3, **settings)
    assert [s for s, _ in model.validation_curve] == [2, 4, 5] and plain.validation_curve == []
    correct, _ = ar.recall_on(model, task, 6, seed=1)
    assert model.validation_curve[-1][1] == pytest.approx(correct.mean())
    for a, b in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="eval_every must be a non-negative integer"):
        ar.train_recall("linear", 3, eval_every=-1, **settings)


def test_validation_curves_average_the_seeds_per_step():
    def run(kind, seed, curve):
        return {"kind": kind, "pairs": 4, "seed": seed, "validation_curve": curve}

    record = {"runs": [run("linear", 0, [[10, 0.2], [20, 0.6]]), run("linear", 1, [[10, 0.4], [20, 0.8]]),
                       run("delta", 0, [[10, 1.0], [20, 1.0]])]}
    table = ar.validation_curves(record, 4)
    assert table.loc["elu+1 linear"].tolist() == pytest.approx([0.3, 0.7])
    assert list(table.columns) == [10, 20] and table.loc["delta rule (DeltaNet)", 20] == 1.0
    with pytest.raises(ValueError, match="no runs with 8 pairs"):
        ar.validation_curves(record, 8)


def test_shipped_recall_records_are_what_notebook_03_reads():
    """The record's budget is RECALL_STEPS for every run, its test sequences are not the development ones
    (seed 2), every run carries a validation curve that ends at the last step, and the state-size record
    varies the width of the elu+1 and delta-rule models at the main record's largest P, and the hybrid's record
    trains the same budget on the same splits at that P, the hybrid and its control (its softmax head alone)."""
    import json

    from utils import data_path

    record = json.loads(data_path("linear_attention/recall.json").read_text())
    state = json.loads(data_path("linear_attention/recall_state.json").read_text())
    assert record["command"] == "python scripts/associative_recall.py"
    assert record["settings"]["steps"] == ar.RECALL_STEPS and record["splits"]["test_seed"] not in (1, 2)
    assert {(r["kind"], r["pairs"], r["seed"]) for r in record["runs"]} == {
        (k, p, s) for k in ar.KINDS for p in ar.RECALL_RUN["pairs"] for s in ar.RECALL_RUN["seeds"]}
    for r in record["runs"] + state["runs"]:
        assert r["validation_curve"][-1][0] == ar.RECALL_STEPS
        assert len(r["test_correct"]) == ar.RECALL_RUN["test_sequences"]
    assert {(r["kind"], r["d_model"]) for r in state["runs"]} == {(k, d) for k in ("linear", "delta") for d in (32, 128)}
    assert {r["pairs"] for r in state["runs"]} == {max(ar.RECALL_RUN["pairs"])}
    hybrid = json.loads(data_path("linear_attention/recall_hybrid.json").read_text())
    assert hybrid["command"] == ("python scripts/associative_recall.py --kinds hybrid --pairs 64 --name recall_hybrid.json && "
                                 "python scripts/associative_recall.py --kinds softmax_head --pairs 64 --name recall_hybrid.json --add")
    assert hybrid["splits"] == record["splits"]
    assert all(hybrid["settings"][k] == record["settings"][k] for k in ("steps", "batch_size", "lr", "d_model", "heads"))
    assert {(r["kind"], r["pairs"], r["seed"]) for r in hybrid["runs"]} == {
        (kind, max(ar.RECALL_RUN["pairs"]), s) for kind in (ar.HYBRID, ar.SOFTMAX_HEAD) for s in ar.RECALL_RUN["seeds"]}


def test_chance_recall_is_a_guess_among_the_sequences_values():
    """A random value slot of the sequence, against the asked pair's value, over many sequences."""
    task = ar.RecallTask(8, n_values=16)
    _, values, is_query, targets = task.batch(4000, torch.Generator().manual_seed(0))
    guess = values[:, :8].gather(1, torch.randint(8, (4000, 8), generator=torch.Generator().manual_seed(1)))
    assert abs((guess == targets).double().mean().item() - ar.chance_recall(8, 16)) < 0.01
    assert ar.chance_recall(64, 64) == 1 / 64 + 63 / 64 / 64
    with pytest.raises(ValueError, match="pairs"):
        ar.chance_recall(0, 64)
