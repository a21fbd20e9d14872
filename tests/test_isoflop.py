"""utils.isoflop: budgets in counted FLOP, valley and allocation fits against known answers."""
import numpy as np
import pandas as pd
import pytest

import utils
from utils import isoflop as iso
from utils import scaling as sc


def test_steps_spend_the_budget_in_counted_flops():
    for shape in iso.SHAPES:
        steps, counted = iso.steps_for_budget(3e9, shape, batch_size=8, block_size=64, vocab_size=75)
        per_step = sc.flops_per_token(shape[0], shape[1], 64, 75)["training"] * 8 * 64
        assert counted == steps * per_step
        assert abs(counted / 3e9 - 1) <= 0.5 / steps + 1e-12  # rounded to whole steps
    with pytest.raises(ValueError, match="budget"):
        iso.steps_for_budget(0, iso.SHAPES[0], batch_size=8, block_size=64, vocab_size=75)


def test_shapes_are_centred_near_the_pilot_optimum():
    for budget in iso.ISOFLOP["budgets"]:
        shapes = iso.shapes_for_budget(budget)
        n = [sc.non_embedding_approx(s[0], s[1]) for s in shapes]
        assert len(shapes) == iso.ISOFLOP["sizes_per_budget"]
        assert min(n) < np.sqrt(budget / iso.ISOFLOP["centre"]) < max(n)


def test_fit_valley_finds_a_known_minimum():
    n = np.logspace(3, 5, 5)
    loss = 2.0 + 0.3 * (np.log10(n) - 4.2) ** 2
    v = iso.fit_valley(n, loss)
    assert v["n_opt"] == pytest.approx(10 ** 4.2, rel=1e-6) and v["interior"]
    assert not iso.fit_valley(n, -loss)["interior"]  # opens downwards: no valley
    with pytest.raises(ValueError, match="at least 3"):
        iso.fit_valley(n[:2], loss[:2])


def test_allocation_fit_and_bootstrap_recover_an_exponent():
    rng = np.random.default_rng(0)
    rows = []
    for c in [1e9, 1e10, 1e11]:
        x_opt = 0.5 * np.log10(c) - 1.0  # N_opt ~ C^0.5
        for x in x_opt + np.linspace(-0.6, 0.6, 5):
            rows.append({"budget": c, "non_embedding": 10 ** x, "tokens": c / (6 * 10 ** x),
                         "test_loss": 2 + 0.3 * (x - x_opt) ** 2 + rng.normal(0, 0.002)})
    chosen = pd.DataFrame(rows)
    a, _ = iso.fit_allocation([1e9, 1e10, 1e11], [10 ** 3.5, 10 ** 4, 10 ** 4.5])
    assert a == pytest.approx(0.5)
    boot = iso.bootstrap_allocation(chosen, n_boot=200)
    assert boot["low"] <= 0.5 <= boot["high"] and boot["high"] - boot["low"] < 0.2
    assert boot["b_low"] <= 0.5 <= boot["b_high"] and boot["b"] == pytest.approx(1 - boot["a"])
    assert boot["table"].interior.all() and len(boot["table"]) == 3
    with pytest.raises(ValueError, match="no column"):
        iso.valleys(chosen.drop(columns="tokens"))


def test_loss_law_fit_recovers_known_parameters():
    # runs laid out like the shipped sweep (three budgets, five sizes each), losses from a known law
    true = {"E": 1.4, "A": 30.0, "B": 900.0, "alpha": 0.45, "beta": 0.6}
    n = np.tile(np.geomspace(500, 30000, 5), 3)
    d = np.repeat([3e5, 1e6, 3e6], 5) * np.tile(np.geomspace(2, 0.5, 5), 3)
    loss = true["E"] + true["A"] / n ** true["alpha"] + true["B"] / d ** true["beta"]
    law = iso.fit_loss_law(n, d, loss)
    for key, value in true.items():
        assert law[key] == pytest.approx(value, rel=0.02), key
    assert law["a"] == pytest.approx(0.6 / 1.05, rel=0.02) and law["a"] + law["b"] == pytest.approx(1)
    assert law["predict"](n, d) == pytest.approx(loss, rel=1e-4)
    # one run 50% off moves the Huber fit little
    wild = loss.copy()
    wild[7] *= 1.5
    assert iso.fit_loss_law(n, d, wild)["alpha"] == pytest.approx(true["alpha"], rel=0.05)


def test_loss_law_bootstrap_covers_the_true_exponent():
    # the layout above with 1% multiplicative noise: the interval holds the true a and the full fit
    true_a = 0.6 / 1.05
    n = np.tile(np.geomspace(500, 30000, 5), 3)
    d = np.repeat([3e5, 1e6, 3e6], 5) * np.tile(np.geomspace(2, 0.5, 5), 3)
    loss = (1.4 + 30.0 / n ** 0.45 + 900.0 / d ** 0.6) * np.exp(np.random.default_rng(1).normal(0, 0.01, n.size))
    boot = iso.bootstrap_loss_law(n, d, loss, n_boot=30)
    assert boot["a_low"] <= true_a <= boot["a_high"] and boot["a_low"] <= boot["law"]["a"] <= boot["a_high"]
    assert len(boot["a_boot"]) == 30 and boot["a_high"] - boot["a_low"] < 0.5


def test_loss_law_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        iso.fit_loss_law([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="at least 5 runs"):
        iso.fit_loss_law([1, 2], [1, 2], [1, 2])
    with pytest.raises(ValueError, match="every loss must be positive"):
        iso.fit_loss_law([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 3, 4, 0])


def test_a_tiny_run_spends_its_budget_and_learns():
    text = utils.data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")
    runs, curves = iso.run_budget(text, 3e8, lrs=[1e-2], shapes=iso.SHAPES[:2])
    assert ((runs.flops_counted / 3e8 - 1).abs() <= 0.5 / runs.steps + 1e-12).all()
    assert (runs.steps >= 10).all()
    assert (runs.test_loss < np.log(len(sc.char_vocab(text)))).all()
    assert runs.chosen.all() and set(curves.name) == set(runs.name)


def test_shipped_isoflop_records_are_complete_and_spend_their_budgets():
    runs, curves, meta = iso.load_records()
    assert meta["command"].startswith("python scripts/isoflop_sweep.py")
    budgets, lrs = meta["config"]["budgets"], meta["config"]["lrs"]
    assert sorted(runs.budget.unique()) == sorted(budgets) and max(budgets) / min(budgets) >= 10
    for budget, g in runs.groupby("budget"):
        shapes = iso.shapes_for_budget(budget, centre=meta["config"]["centre"])
        assert sorted(g.name.unique()) == sorted(f"L{s[0]}-d{s[1]}" for s in shapes)
        assert len(g) == len(shapes) * len(lrs)
        assert ((g.flops_counted / budget - 1).abs() <= 0.5 / g.steps + 1e-9).all()
        assert (g[g.chosen].groupby("name").size() == 1).all()  # one chosen rate per size
        best = g.loc[g.groupby("name").val_loss.idxmin()]
        assert set(best.index) == set(g[g.chosen].index)  # chosen on validation, never on test
    last = curves.sort_values("step").groupby(["budget", "name", "lr"]).val_loss.last()
    merged = runs.set_index(["budget", "name", "lr"]).val_loss
    assert np.allclose(last.loc[merged.index].to_numpy(), merged.to_numpy())
    assert (runs.test_loss < np.log(75)).all()


def test_shipped_seed_records_have_every_size():
    records = sc.load_sweep_records([1, 2])
    sizes = [f"L{s[0]}-d{s[1]}" for s in sc.SWEEPS["cpu"]["sizes"]]
    for seed, (results, curves) in records.items():
        assert list(results.name) == sizes
        assert set(curves.name) == set(sizes) and (curves.step.max() == sc.SWEEPS["cpu"]["steps"])
        header = utils.data_path(f"scaling_sweep/cpu_seed{seed}.csv").read_text(encoding="utf-8").splitlines()[0]
        assert f"--seed {seed}" in header and "scripts/scaling_sweep.py" in header
    with pytest.raises(FileNotFoundError, match="no record"):
        sc.load_sweep_records([99])


def test_single_rate_allocations_recover_an_exponent():
    rng = np.random.default_rng(1)
    rows = []
    for lr, width in [(0.01, 0.3), (0.03, 0.4)]:
        for c in [1e9, 1e10, 1e11]:
            x_opt = 0.5 * np.log10(c) - 1.0  # N_opt ~ C^0.5 at every rate
            for x in x_opt + np.linspace(-0.6, 0.6, 5):
                rows.append({"budget": c, "lr": lr, "non_embedding": 10 ** x, "tokens": c / (6 * 10 ** x),
                             "test_loss": 2 + width * (x - x_opt) ** 2 + rng.normal(0, 0.002)})
    table = iso.single_rate_allocations(pd.DataFrame(rows), n_boot=200)
    assert list(table.index) == ["lr 0.01 for every size", "lr 0.03 for every size"]
    assert np.allclose(table.a.to_numpy(float), 0.5, atol=0.03)
    assert ((table["95% low"] <= table.a) & (table.a <= table["95% high"])).all()
    assert (table["95% high"] - table["95% low"] < 0.2).all()
    with pytest.raises(ValueError, match="'lr'"):
        iso.single_rate_allocations(pd.DataFrame(rows).drop(columns="lr"))


def test_shipped_isoflop_seed_records_repeat_the_smallest_budget():
    runs0, _, meta0 = iso.load_records()
    folders = sorted(utils.data_path("isoflop_seeds").glob("seed?"))  # seed1, seed2 (seedK_large, seedK_lower: a test below)
    assert folders
    for folder in folders:
        runs, curves, meta = iso.load_records(folder)
        seed = int(folder.name.removeprefix("seed"))
        assert seed != meta0["config"]["seed"] and meta["config"]["seed"] == seed
        assert meta["command"].startswith("python scripts/isoflop_sweep.py") and f"--seed {seed}" in meta["command"]
        same = runs0[runs0.budget.isin(runs.budget.unique())]
        assert sorted(zip(runs.name, runs.lr)) == sorted(zip(same.name, same.lr))
        assert (runs.set_index(["name", "lr"]).steps == same.set_index(["name", "lr"]).steps).all()
        best = runs.loc[runs.groupby("name").val_loss.idxmin()]
        assert set(best.index) == set(runs[runs.chosen].index)  # chosen on validation
        assert not np.allclose(runs.sort_values(["name", "lr"]).val_loss, same.sort_values(["name", "lr"]).val_loss)


def test_gap_at_compute_compares_both_designs_at_equal_compute():
    # run b is best on test at 1e10, run a on validation: the pick is made on validation
    chosen = pd.DataFrame({"name": ["a", "b", "c"], "budget": [1e10, 1e10, 1e11], "lr": [0.01] * 3,
                           "val_loss": [2.3, 2.45, 2.1], "test_loss": [2.5, 2.4, 2.0]})
    curves = pd.DataFrame({"step": [50, 100, 300], "flops_counted": [5e9, 2e10, 2e11],
                           "eval_loss": [3.0, 2.8, 2.6]})
    gap = iso.gap_at_compute(chosen, {0: (None, curves), 1: (None, curves.assign(eval_loss=curves.eval_loss + 0.2))})
    assert list(gap.index) == ["1e+10", "1e+11", "2e+11"]
    assert gap.loc["1e+10", "iso-FLOP run"] == "a at 1e+10" and gap.loc["1e+10", "test"] == 2.5
    assert gap.loc["1e+10", "seed 0"] == 3.0 and gap.loc["1e+10", "gap"] == pytest.approx(3.1 - 2.5)
    assert gap.loc["1e+11", "seed 1"] == pytest.approx(3.0)
    assert gap.loc["2e+11", "gap"] == pytest.approx(2.7 - 2.0)
    assert max(len(line) for line in gap.round(3).to_string().splitlines()) <= 100


def test_design_table_lists_each_design():
    table = iso.design_table({"x": (0.8, 0.7, 0.9, "3 seeds"), "y": (0.5, 0.4, 0.6, "bootstrap")})
    assert list(table.index) == ["x", "y"] and table.loc["y", "a"] == 0.5
    assert table.loc["x", "interval over"] == "3 seeds"


def test_design_table_reads_seed_rows_and_bootstrap_fits():
    seeds = pd.Series({"seed 0": 0.8, "seed 1": 0.9, "mean": 0.85, "sd": 0.07, "95% low": 0.2, "95% high": 1.5})
    table = iso.design_table({"fixed": seeds, "valleys": {"a": 0.5, "low": 0.4, "high": 0.6, "b": 0.5}})
    assert table.loc["fixed"].tolist() == [0.85, 0.2, 1.5, "2 seeds (t)"]
    assert table.loc["valleys"].tolist() == [0.5, 0.4, 0.6, "parametric bootstrap"]


def test_fixed_step_exponents_on_the_shipped_records_is_a_seed_row():
    sweeps, _, _ = iso.load_fixed_step_records()
    a = iso.fixed_step_exponents(sweeps, min_step=iso.FIXED_STEP["min_step"])
    r, c = sweeps[1]
    assert a["seed 1"] == iso.frontier_exponent(c, r.set_index("name").non_embedding, min_step=iso.FIXED_STEP["min_step"])[0]
    assert a["95% low"] < a["mean"] < a["95% high"] and len([k for k in a.index if k.startswith("seed ")]) == len(sweeps)


def test_shipped_fixed_step_records_follow_their_command():
    sweeps, runs, meta = iso.load_fixed_step_records()
    cfg = meta["config"]
    assert meta["command"] == ("python scripts/isoflop_sweep.py --fixed-steps 600 --seeds 0 1 2 "
                               "--out data/isoflop_fixed_step")
    assert cfg["steps"] == iso.FIXED_STEP["steps"] and cfg["seeds"] == iso.FIXED_STEP["seeds"]
    assert cfg["batch_size"] == iso.ISOFLOP["batch_size"] and cfg["lrs"] == iso.ISOFLOP["lrs"]
    names = [f"L{s[0]}-d{s[1]}" for s in iso.SHAPES]
    assert sorted(sweeps) == cfg["seeds"]
    for seed, g in runs.groupby("seed"):
        assert sorted(zip(g.name, g.lr)) == sorted((n, lr) for n in names for lr in cfg["lrs"])
        assert (g.steps == cfg["steps"]).all() and (g.n_layer == 2).all()
        mean = g.groupby("lr").val_loss.mean()  # one rate for every size, chosen on validation
        assert (g[g.chosen].lr == mean.idxmin()).all() and g.chosen.sum() == len(names)
    for seed, (results, curves) in sweeps.items():
        assert list(results.name) == names and curves.step.max() == cfg["steps"]
        per_step = results.set_index("name").flops_counted / cfg["steps"]
        assert np.allclose(curves.flops_counted, curves.step * curves.name.map(per_step))
        assert (curves.eval_loss == curves.test_loss).all()


def test_one_fixed_step_run_trains_again_to_its_record():
    _, runs, meta = iso.load_fixed_step_records()
    cfg = meta["config"]
    row = runs[(runs.seed == 0) & (runs.name == "L2-d4") & runs.chosen].iloc[0]
    text = utils.data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")
    again, _ = iso.train_run(text, iso.SHAPES[0], None, row.lr, steps=cfg["steps"], eval_every=cfg["eval_every"],
                             seed=0, threads=1, **{k: cfg[k] for k in ("batch_size", "block_size", "val_fraction",
                                                                       "val_windows")})
    assert again["steps"] == row.steps and abs(again["test_loss"] - row.test_loss) < 0.02


def test_local_slopes_and_repetition_table_on_the_shipped_records():
    table = pd.DataFrame({"budget": [1e10, 1e11, 1e12], "n_opt": [1e3, 10 ** 3.5, 10 ** 4.3]})
    assert iso.local_slopes(table) == pytest.approx([0.5, 0.8])
    runs, curves, _ = iso.load_records()
    chosen = runs[runs.chosen]
    rep = iso.repetition_table(chosen, curves)
    assert len(rep) == len(chosen) and rep.epochs.is_monotonic_increasing
    assert np.allclose(rep.repeated, 1 - (1 - np.exp(-rep.epochs)) / rep.epochs)
    assert (rep.repeated > 0).all() and (rep.repeated < rep.epochs).all()
    assert np.allclose(rep["train - test"], rep.train - rep.test)


def test_load_seed_records_refuses_a_run_recorded_twice():
    with pytest.raises(ValueError, match="repeated runs"):
        iso.load_seed_records(["isoflop", "isoflop"])


def test_seed_records_give_every_budget_three_seeds_chosen_on_validation():
    runs, commands = iso.load_seed_records()
    assert len(commands) == len(iso.SEED_RECORDS) and all(c.startswith("python scripts/isoflop_sweep.py") for c in commands)
    for folder in iso.SEED_RECORDS:  # a record made with --runs holds exactly the runs its command lists
        r, _, meta = iso.load_records(utils.data_path(folder))
        if "runs" in meta["config"]:
            listed = {(float(b), n, float(lr)) for b, n, lr in (x.split(":") for x in meta["config"]["runs"])}
            assert listed == set(zip(r.budget, r.name, r.lr)) and " ".join(meta["config"]["runs"]) in meta["command"]
    assert sorted(runs.seed.unique()) == [0, 1, 2]
    assert ((runs.flops_counted / runs.budget - 1).abs() <= 0.5 / runs.steps + 1e-9).all()
    for (seed, budget), g in runs.groupby(["seed", "budget"]):
        assert sorted(g.name.unique()) == sorted(f"L{s[0]}-d{s[1]}" for s in iso.shapes_for_budget(budget))
        assert (g.groupby("name").chosen.sum() == 1).all()
        assert (g.groupby("name").size() >= 2).all()  # every size of every seed chose among at least two rates
    best = runs.loc[runs.groupby(["seed", "budget", "name"]).val_loss.idxmin()]
    assert set(best.index) == set(runs[runs.chosen].index)  # chosen on validation, never on test
    # what notebook 01 reads off these records
    wide = runs[runs.seed == 0]
    assert wide.at_end.sum() == 0 and (wide.groupby(["budget", "name"]).size() >= 3).all()
    by_seed, a = iso.seed_allocations(runs)
    _, a_fixed = iso.seed_allocations(runs, rates_from=0)
    n_opt = by_seed[[c for c in by_seed if c.startswith("N_opt")]].to_numpy(float)
    assert by_seed.interior.all() and (np.diff(n_opt, axis=1) > 0).all()  # interior valleys, moving up with C
    slopes = np.diff(np.log(n_opt), axis=1) / np.diff(np.log([1e10, 3e10, 1e11]))
    assert (slopes[:, 1] > slopes[:, 0]).all()  # every seed steepens between the two larger budgets
    assert 0.49 < a.low < 0.534 and a.high < 0.75  # above Hoffmann's 0.49, inside their 0.462-0.534, below the frontier's
    assert a_fixed.high - a_fixed.low > a.high - a.low
    _, a_total = iso.seed_allocations(runs, n_col="total")
    assert a_total.value < a.value  # counting the embeddings and the head lowers a, as for seed 0 alone
    assert (runs.at_top <= runs.at_end).all() and not (runs.at_top & ~runs.chosen).any()
    larger = runs[(runs.seed > 0) & (runs.budget > 1e10)]  # seeds 1-2: three rates per size there
    assert (larger.groupby(["seed", "budget", "name"]).lr.nunique() == 3).all()


def test_rate_gaps_on_the_shipped_records():
    runs, _, _ = iso.load_records()
    table = iso.rate_gaps(runs, shared=0.005, min_step=iso.FIXED_STEP["min_step"])
    assert list(table.columns) == ["both at lr 0.005", "iso-FLOP rate per size, fixed-step at 0.005",
                                   "iso-FLOP rate per size, fixed-step any rate"]
    assert len(table) == runs.budget.nunique() + 1 and table.notna().all().all()
    # a frontier over every rate is at most the frontier at one of them, so its gap is no larger
    assert (table.iloc[:, 2] <= table.iloc[:, 1] + 1e-12).all()
