"""Tests of utils.vit: the digits data set, the patch embedding, [CLS] attention, and a short
training run of the small ViT that must learn (no Hub, no timing)."""
import numpy as np
import pytest
import torch
from transformers import TimesformerConfig, ViTForImageClassification, pipeline
from transformers.models.vit.modeling_vit import ViTPatchEmbeddings

from utils import train
from utils.vit import (DIGIT_NAMES, RandomShift, SmallCNN, accuracy, choose_on_validation, cls_attention, digit_to_image,
                       digits_arrays, digits_processor, embed_patches_by_matmul, layer_flops, load_digits_dataset,
                       plot_data_efficiency,
                       patchify, predict, prepare, score, show_cls_attention, small_vit_config, subset,
                       train_digits, video_token_counts)


@pytest.fixture
def one_thread():
    """The small ViT trains fastest on one thread; put the process's setting back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


@pytest.fixture(scope="module")
def prepared(digits):
    processor = digits_processor()
    return processor, prepare(digits["train"], processor), prepare(digits["test"], processor)


def test_digit_to_image_maps_grey_levels_to_bytes():
    values = np.zeros(64)
    values[:3] = [16, 8, 1]
    image = digit_to_image(values)
    assert image.size == (8, 8) and image.mode == "L"
    assert list(np.asarray(image)[0, :4]) == [255, 128, 16, 0]  # 255 * v / 16, rounded


@pytest.mark.parametrize("bad, message", [(np.zeros(63), "64 values"), (np.full(64, 17), "0..16"),
                                          (np.full(64, -1), "0..16")])
def test_digit_to_image_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        digit_to_image(bad)


def test_digits_dataset_is_a_stratified_split(digits):
    assert digits["train"].num_rows == 1437 and digits["test"].num_rows == 360
    assert digits["train"].features["label"].names == DIGIT_NAMES
    assert digits["test"][0]["image"].size == (8, 8)
    counts = np.bincount(digits["test"]["label"], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of 174..183 digits a class
    again = load_digits_dataset()
    assert again["test"]["label"] == digits["test"]["label"]
    with pytest.raises(ValueError, match="test_size"):
        load_digits_dataset(test_size=1.5)


def test_prepare_gives_what_the_pipeline_gives(digits, prepared):
    processor, _, test = prepared
    assert test[0]["pixel_values"].shape == (3, 8, 8)
    assert float(test[:]["pixel_values"].min()) == -1.0 and float(test[:]["pixel_values"].max()) == 1.0
    classifier = pipeline("image-classification", model=ViTForImageClassification(small_vit_config()),
                          image_processor=processor)
    for i in range(3):
        from_pipeline = classifier.preprocess(digits["test"][i]["image"])["pixel_values"][0]
        assert torch.allclose(from_pipeline, test[i]["pixel_values"])
    with pytest.raises(ValueError, match="label"):
        prepare(digits["test"].remove_columns("label"), processor)


def test_patchify_cuts_row_by_row_channel_first():
    image = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    patches = patchify(image, 2)
    assert patches.shape == (1, 4, 8)
    # first patch: channel 0 pixels (0,1,4,5), then channel 1 pixels (16,17,20,21)
    assert patches[0, 0].tolist() == [0, 1, 4, 5, 16, 17, 20, 21]
    assert patches[0, 1].tolist() == [2, 3, 6, 7, 18, 19, 22, 23]
    assert patches[0, 2, :4].tolist() == [8, 9, 12, 13]
    with pytest.raises(ValueError, match="does not split"):
        patchify(image, 3)
    with pytest.raises(ValueError, match="batch, channels"):
        patchify(image[0], 2)


def test_patch_embedding_convolution_is_a_matrix_product():
    torch.manual_seed(0)
    config = small_vit_config(image_size=16, patch_size=4, hidden_size=24)
    embeddings = ViTPatchEmbeddings(config)
    pixels = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected = embeddings(pixels)
        ours = embed_patches_by_matmul(pixels, embeddings.projection)
    assert ours.shape == (3, 16, 24)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="stride"):
        embed_patches_by_matmul(pixels, torch.nn.Conv2d(3, 8, kernel_size=4, stride=2))


def test_cls_attention_reads_the_first_row_of_the_attention():
    torch.manual_seed(0)
    model = ViTForImageClassification(small_vit_config())
    pixels = torch.randn(2, 3, 8, 8)
    before = model.config._attn_implementation
    maps = cls_attention(model, pixels, layer=1)
    assert model.config._attn_implementation == before and model.training
    model.set_attn_implementation("eager")
    with torch.no_grad():
        weights = model(pixel_values=pixels, output_attentions=True).attentions[1]
    assert maps.shape == (2, 4, 4)
    torch.testing.assert_close(maps.flatten(1), weights[:, :, 0, 1:].mean(1))
    torch.testing.assert_close(maps.sum((1, 2)) + weights[:, :, 0, 0].mean(1), torch.ones(2))
    with pytest.raises(ValueError, match="layer"):
        cls_attention(model, pixels, layer=6)


def test_video_token_counts_from_the_timesformer_config():
    counts = video_token_counts(TimesformerConfig())  # 8 frames of 224 x 224 in 16 x 16 patches
    assert counts["patches_per_frame"] == 196 and counts["image_tokens"] == 197
    assert counts["video_tokens"] == 8 * 196 + 1 == 1569
    assert counts["joint_scores"] == 1569**2
    # divided: 196 places x 8 x 8 across time, then 8 frames x (196 + [CLS])^2 within a frame
    assert counts["divided_scores"] == 196 * 8**2 + 8 * 197**2 == counts["temporal_scores"] + counts["spatial_scores"]
    one = video_token_counts(TimesformerConfig(), num_frames=1)
    assert one["video_tokens"] == 197 and one["joint_scores"] == one["image_scores"] == 197**2
    # one frame: the spatial step is the image's attention; the time step adds each patch's score with itself
    assert one["divided_scores"] == one["joint_scores"] + 196
    with pytest.raises(ValueError, match="num_frames"):
        video_token_counts(TimesformerConfig(), num_frames=0)


def test_small_vit_learns_digits_and_runs_in_the_pipeline(digits, prepared, tmp_path, one_thread):
    processor, train_data, test_data = prepared
    torch.manual_seed(0)
    model = ViTForImageClassification(small_vit_config())
    chance = accuracy(model, test_data)
    history = train(model, train_data, batch_size=32, epochs=10, lr=1e-3, progress=False,
                    eval_fn=lambda m: {"accuracy": accuracy(m, test_data)})
    first, last = history.loss.iloc[:10].mean(), history.loss.iloc[-10:].mean()
    assert last < 0.5 * first
    assert chance < 0.3 and history.accuracy.iloc[-1] > 0.6  # chance is 0.1
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    classifier = pipeline("image-classification", model=str(tmp_path))
    images = digits["test"][:20]["image"]
    labels = [max(out, key=lambda r: r["score"])["label"] for out in classifier(images)]
    assert labels == [DIGIT_NAMES[i] for i in predict(model, test_data.select(range(20)))]


def test_validation_split_is_carved_from_train_and_leaves_test_alone(digits):
    three = load_digits_dataset(validation_size=0.2)
    assert {k: v.num_rows for k, v in three.items()} == {"train": 1149, "validation": 288, "test": 360}
    assert three["test"]["label"] == digits["test"]["label"]
    X_test, _ = digits_arrays(three["test"])
    assert np.array_equal(X_test, digits_arrays(digits["test"])[0])
    counts = np.bincount(three["validation"]["label"], minlength=10)
    assert counts.min() >= 27 and counts.max() <= 30  # 20% of 139..146 training digits a class
    with pytest.raises(ValueError, match="validation_size"):
        load_digits_dataset(validation_size=0)


def test_digits_arrays_give_back_scikit_learns_grey_levels(digits):
    from sklearn.datasets import load_digits

    X_train, y_train = digits_arrays(digits["train"])
    X_test, _ = digits_arrays(digits["test"])
    assert X_train.shape == (1437, 64) and y_train.shape == (1437,)
    ours = np.concatenate([X_train, X_test])
    original = load_digits().data
    key = lambda a: a[np.lexsort(a.T[::-1])]  # the same rows in some order: sort them both
    assert np.array_equal(key(ours), key(original))


def test_subset_is_stratified_and_checks_the_fraction(digits):
    tenth = subset(digits["train"], 0.1)
    assert tenth.num_rows == 143
    assert np.bincount(tenth["label"], minlength=10).min() >= 13
    assert subset(digits["train"], 1.0) is digits["train"]
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            subset(digits["train"], bad)


def test_random_shift_moves_whole_pixels_and_fills_with_background():
    image = torch.full((3, 8, 8), -1.0)
    image[:, 3, 4] = 1.0
    examples = [{"pixel_values": image, "labels": torch.tensor(7)}] * 200
    batch = RandomShift(max_dx=2, max_dy=0, seed=0)(examples)
    assert batch["pixel_values"].shape == (200, 3, 8, 8) and batch["labels"].tolist() == [7] * 200
    where = [(batch["pixel_values"][i, 0] > 0).nonzero().tolist() for i in range(200)]
    assert all(len(w) == 1 and w[0][0] == 3 for w in where)  # never up or down
    assert {w[0][1] for w in where} == {2, 3, 4, 5, 6}  # 4 - 2 .. 4 + 2, each seen
    assert (batch["pixel_values"] <= -1).sum() == 200 * 3 * 63  # everything else is background
    both = RandomShift(max_dx=1, max_dy=1, seed=0)(examples)
    assert {tuple((both["pixel_values"][i, 0] > 0).nonzero()[0].tolist()) for i in range(200)} == \
        {(r, c) for r in (2, 3, 4) for c in (3, 4, 5)}
    assert torch.equal(RandomShift(0)(examples[:2])["pixel_values"], torch.stack([image, image]))
    with pytest.raises(ValueError, match="max_dy"):
        RandomShift(max_dx=1, max_dy=-1)


def test_small_cnn_matches_the_vit_in_size_and_speaks_its_interface():
    cnn = SmallCNN()
    vit_size = sum(p.numel() for p in ViTForImageClassification(small_vit_config()).parameters())
    cnn_size = sum(p.numel() for p in cnn.parameters())
    assert abs(cnn_size - vit_size) / vit_size < 0.05
    pixels, labels = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4])
    out = cnn(pixel_values=pixels, labels=labels)
    assert out.logits.shape == (5, 10)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    assert cnn(pixel_values=pixels).loss is None
    with pytest.raises(ValueError, match="8, 8"):
        cnn(pixel_values=torch.randn(5, 3, 16, 16))


def test_score_gives_the_wilson_interval():
    labels = np.zeros(360, dtype=int)
    predictions = labels.copy()
    predictions[:5] = 1
    result = score(predictions, labels)
    n, p, z = 360, 355 / 360, 1.959963984540054
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert result["errors"] == 5 and result["n"] == 360 and result["accuracy"] == pytest.approx(p)
    assert result["low"] == pytest.approx(centre - half) and result["high"] == pytest.approx(centre + half)
    assert score(labels, labels)["high"] == pytest.approx(1.0)
    # the interval is utils.evaluation's, and the confidence level reaches it
    from utils import evaluation

    same = evaluation.wilson(355, 360, confidence=0.9)
    narrower = score(predictions, labels, confidence=0.9)
    assert (narrower["low"], narrower["high"]) == (same.low, same.high)
    assert result["low"] < narrower["low"] and narrower["high"] < result["high"]
    with pytest.raises(ValueError, match="shapes"):
        score(predictions[:10], labels)


def test_train_digits_runs_epochs_or_at_least_min_steps(prepared, one_thread):
    _, train_data, _ = prepared
    few = train_data.select(range(40))
    torch.manual_seed(0)
    history = train_digits(SmallCNN(width=4, hidden=8), few, epochs=1, min_steps=5, batch_size=16)
    assert len(history) == 5  # 1 epoch would be 3 steps
    history = train_digits(SmallCNN(width=4, hidden=8), few, epochs=3, min_steps=2, batch_size=16, max_dx=0)
    assert len(history) == 9


def test_train_digits_in_memory_draws_the_same_batches_as_the_dataset(prepared, one_thread):
    from utils.vit import in_memory

    _, train_data, _ = prepared
    few = train_data.select(range(48))
    examples = in_memory(few)
    assert len(examples) == 48 and torch.equal(examples[7]["pixel_values"], few[7]["pixel_values"])
    assert in_memory(examples) is examples
    histories = []
    for data in (few, examples):  # utils.train on the datasets.Dataset itself, then through train_digits
        torch.manual_seed(0)
        model = SmallCNN(width=4, hidden=8)
        histories.append(train(model, data, collate_fn=RandomShift(1, 0, seed=0), batch_size=16, max_steps=6,
                               progress=False).loss.to_numpy())
    np.testing.assert_array_equal(histories[0], histories[1])
    with pytest.raises(ValueError, match="pixel_values"):
        in_memory(few.remove_columns("pixel_values"))


def test_show_cls_attention_uses_one_colour_scale():
    import matplotlib

    matplotlib.use("Agg")
    maps = np.stack([np.full((4, 4), 1 / 32), np.eye(4) / 4])
    fig = show_cls_attention([np.zeros((8, 8)), np.ones((8, 8))], maps, titles=["a", "b"])
    overlays = [ax.images[0] for ax in fig.axes[:2]]
    assert all(im.get_clim() == (0, 0.25) for im in overlays)
    assert all(im.get_cmap().name == "viridis" for im in overlays)  # attention is not drawn in the ink's greys
    with pytest.raises(ValueError, match="one 2-D map per image"):
        show_cls_attention([np.zeros((8, 8))], maps)


def test_shipped_validation_runs_match_the_models_and_the_splits(digits):
    import pandas as pd

    from utils import data_path

    runs = pd.read_csv(data_path("vit_digits", "validation.csv"))
    assert set(runs["model"]) == {"ViT", "CNN"} and len(runs) == 32
    sizes = {"ViT": sum(p.numel() for p in ViTForImageClassification(small_vit_config()).parameters()),
             "CNN": sum(p.numel() for p in SmallCNN().parameters())}
    assert (runs["parameters"] == runs["model"].map(sizes)).all()
    train = load_digits_dataset(validation_size=0.2)["train"]
    for fraction, n in runs.groupby("fraction")["training_digits"].first().items():
        assert subset(train, fraction).num_rows == n
    assert (runs["steps"] == [max(30 * -(-n // 64), 300) for n in runs["training_digits"]]).all()
    assert np.allclose(runs["validation_accuracy"], 1 - runs["validation_errors"] / 288, atol=1e-4)


def test_score_table_formats_one_row_per_model():
    from utils.vit import score_table

    labels = np.arange(10) % 3
    table = score_table({"right": labels, "half": np.where(np.arange(10) < 5, labels, -1)}, labels)
    assert list(table.index) == ["right", "half"] and list(table["errors"]) == [0, 5]
    assert table.loc["half", "accuracy"] == "50.0%"
    half = score(np.where(np.arange(10) < 5, labels, -1), labels)
    assert table.loc["half", "95% interval"] == f"{half['low']:.1%} to {half['high']:.1%}"
    assert table.loc["half", "95% interval"] == "23.7% to 76.3%"  # Wilson's interval of 5 of 10
    assert table.loc["right", "95% interval"] == "72.2% to 100.0%"  # ... and of 10 of 10
    assert list(score_table({"half": labels}, labels, confidence=0.9).columns)[-1] == "90% interval"


def test_seed_records_follow_their_recipe():
    """The shipped tuning and seeds records of scripts/vit_digits_seeds.py: each network's seeds use the
    setting with the best validation accuracy in its tuning record, the same number of steps at every
    training-set size, five seeds per size, a prediction for each of the 360 test digits, and a command
    that today's script accepts."""
    import argparse
    import importlib.util
    import shlex
    from pathlib import Path

    from utils import data_path, vit

    tuning, seeds = vit.load_seed_records(data_path("vit_digits"))
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("vit_digits_seeds", root / "scripts" / "vit_digits_seeds.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for model, grid in vit.SEED_GRIDS.items():
        tried = tuning[tuning["model"] == model]
        assert len(tried) == len(script.settings(model))
        best = tried.loc[tried["validation_accuracy"].idxmax()]
        runs = seeds[seeds["model"] == model]
        for key in grid:
            assert (runs[key] == best[key]).all(), (model, key)
        assert runs.groupby("training_digits")["seed"].nunique().eq(5).all()
        assert runs["training_digits"].nunique() >= 2
    sizes = seeds.groupby("model")["training_digits"].unique()
    assert set(sizes["ViT"]) == set(sizes["CNN"]) and len(sizes["ViT"]) == 4  # both at every size, to pair
    assert seeds["test_predictions"].str.len().eq(360).all()
    assert seeds["test_accuracy"].between(0, 1).all()
    for command in set(tuning["command"]) | set(seeds["command"]):
        words = shlex.split(command)
        assert words[:2] == ["python", "scripts/vit_digits_seeds.py"]
        parser_args = []

        def stop(self, args=None, namespace=None, original=argparse.ArgumentParser.parse_args):
            parser_args.append(original(self, args, namespace))
            raise SystemExit(0)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(argparse.ArgumentParser, "parse_args", stop)
            with pytest.raises(SystemExit):
                script.main(words[2:])
        assert parser_args and parser_args[0].stage in ("tune", "seeds")


def test_layer_flops_of_vit_base_cross_at_six_d():
    from transformers import ViTConfig

    base = ViTConfig()  # D = 768, MLP 3072
    at_8_frames = layer_flops(base, 8 * 196 + 1)
    assert at_8_frames["linear_flops"] == 2 * 1569 * (4 * 768**2 + 2 * 768 * 3072)
    assert at_8_frames["attention_flops"] / 1e9 == pytest.approx(7.56, abs=0.01)
    assert at_8_frames["linear_flops"] / 1e9 == pytest.approx(22.21, abs=0.01)
    at_6d = layer_flops(base, 6 * 768)
    assert at_6d["attention_flops"] == at_6d["linear_flops"]
    with pytest.raises(ValueError, match="tokens must be at least 1"):
        layer_flops(base, 0)


def test_plot_data_efficiency_names_missing_columns_and_draws_one_line_per_run():
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    runs = pd.DataFrame({"model": ["ViT", "ViT", "CNN", "CNN"], "shift": ["0 x 0"] * 4,
                         "training_digits": [10, 20, 10, 20], "validation_accuracy": [0.5, 0.6, 0.7, 0.8]})
    fig = plot_data_efficiency(runs, chosen={"ViT": "0 x 0"})
    lines = fig.axes[0].get_lines()
    assert sorted(line.get_label() for line in lines) == ["CNN, shift 0 x 0", "ViT, shift 0 x 0 (chosen)"]
    with pytest.raises(ValueError, match="validation_accuracy"):
        plot_data_efficiency(runs.drop(columns="validation_accuracy"))


def test_choose_on_validation_picks_by_the_validation_split_and_refits_on_train():
    from sklearn.neighbors import KNeighborsClassifier

    # k = 1 gets both validation points right, k = 5 (a majority of 0s) gets 1.05 wrong
    X_train = np.array([[0.0], [1.0], [1.1], [5.0], [5.1], [10.0]])
    y_train = np.array([0, 1, 1, 0, 0, 1])
    X_val, y_val = np.array([[1.05], [5.05]]), np.array([1, 0])
    fitted, search = choose_on_validation(KNeighborsClassifier(), {"n_neighbors": [5, 1]},
                                          (X_train, y_train), (X_val, y_val))
    assert search.best_score_ == 1.0 and fitted.n_neighbors == 1
    assert fitted.n_samples_fit_ == len(X_train)  # refitted on the training points only
    with pytest.raises(ValueError, match="differ in length"):
        choose_on_validation(KNeighborsClassifier(), {"n_neighbors": [1]}, (X_train, y_train[:3]), (X_val, y_val))


def test_plot_seed_curve_ticks_every_size_and_breaks_lines_at_gaps():
    """Ticks at every size any model was trained at; a model not trained at a size has no point there,
    so its line does not run across it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from utils import vit

    rows = [{"model": m, "training_digits": n, "seed": s, "test_accuracy": 0.5 + 0.1 * k + 0.01 * s}
            for m, sizes in (("CNN", (100, 200, 400)), ("ViT", (100, 400))) for k, n in enumerate(sizes)
            for s in range(3)]
    ax = vit.plot_seed_curve(pd.DataFrame(rows))
    assert [int(t) for t in ax.get_xticks()] == [100, 200, 400]
    lines = {line.get_label().split(":")[0]: line for line in ax.get_lines()}
    assert lines["CNN"].get_marker() and lines["ViT"].get_marker()
    vit_y = np.asarray(lines["ViT"].get_ydata(), dtype=float)
    assert np.isnan(vit_y[1]) and np.allclose(vit_y[[0, 2]], [0.51, 0.61])  # no ViT point at 200: the line breaks
    plt.close("all")


def test_seed_means_and_choices_read_the_records(capsys):
    import pandas as pd

    from utils import vit

    seeds = pd.DataFrame([{"model": m, "training_digits": 100, "seed": s, "test_accuracy": a, "lr": 1e-3,
                           "steps": 500, "intermediate_size": 128}
                          for m, accs in (("CNN", (0.9, 0.92, 0.94)), ("ViT", (0.8, 0.8, 0.83))) for s, a in enumerate(accs)])
    means = vit.seed_means(seeds)
    assert str(means["CNN", 100]) == "92.0% ± 2.0 over 3 seeds (90.0% to 94.0%)"
    tuning = pd.DataFrame({"model": ["CNN"] * 3 + ["ViT"] * 2, "validation_accuracy": [0.99, 0.99, 0.98, 0.95, 0.94]})
    vit.print_seed_choices(tuning, seeds, validation_digits=100)
    out = capsys.readouterr().out
    assert "CNN: chosen {'lr': 0.001, 'steps': 500} (3 settings tried; it is right on 0 more" in out
    assert "tied with 1 other(s)" in out and "ViT: chosen" in out and "right on 1 more of the 100" in out


def test_build_digits_model_and_write_records_name_bad_input(tmp_path):
    from utils import vit

    assert type(vit.build_digits_model("CNN")).__name__ == "SmallCNN"
    assert vit.build_digits_model("ViT", intermediate_size=256).config.intermediate_size == 256
    assert type(vit.build_digits_model("MLP")).__name__ == "DigitsMLP"
    with pytest.raises(ValueError, match="kind must be 'ViT', 'CNN' or 'MLP'"):
        vit.build_digits_model("RNN")
    with pytest.raises(ValueError, match="the CNN takes no settings"):
        vit.build_digits_model("CNN", intermediate_size=256)
    with pytest.raises(ValueError, match="no rows"):
        vit.write_records([], tmp_path / "x.csv")
    out = vit.write_records([{"a": 1}], tmp_path / "sub" / "x.csv")
    assert out.read_text() == "a\n1\n"


def test_pooled_features_read_the_cls_state_of_each_image():
    from PIL import Image
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    from utils import vit

    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                     image_size=28, patch_size=14))
    processor = BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28})
    images = [Image.fromarray(np.full((8, 8), 16 * k, dtype=np.uint8), "L") for k in range(5)]
    features = vit.pooled_features(model, processor, images, batch_size=2)
    with torch.no_grad():
        expected = model(**processor(images, return_tensors="pt")).pooler_output.numpy()
    assert features.shape == (5, 16) and np.allclose(features, expected, atol=1e-5)
    with pytest.raises(ValueError, match="no images"):
        vit.pooled_features(model, processor, [])


def test_divided_layer_flops_counts_the_extra_weights_of_transformers_divided_layer():
    from transformers.models.timesformer.modeling_timesformer import TimesformerLayer
    from utils.vit import divided_layer_flops, video_cost_tables

    shape = dict(hidden_size=32, intermediate_size=128, num_attention_heads=4, image_size=32, patch_size=8)
    small = TimesformerConfig(**shape)
    weights = {kind: sum(p.numel() for n, p in TimesformerLayer(TimesformerConfig(**shape, attention_type=kind), 0)
                         .named_parameters() if n.endswith("weight") and p.ndim == 2)
               for kind in ("divided_space_time", "space_only")}
    extra_per_token = weights["divided_space_time"] - weights["space_only"]  # multiply-adds per patch token
    flops = divided_layer_flops(small, num_frames=3)
    assert extra_per_token == 5 * 32**2
    assert flops["temporal_linear_flops"] == 2 * extra_per_token * 16 * 3
    assert flops["linear_flops"] == layer_flops(small, 3 * 16 + 1)["linear_flops"] + flops["temporal_linear_flops"]
    assert flops["attention_flops"] == 4 * 32 * (16 * 3**2 + 3 * 17**2)
    counts, gflop = video_cost_tables(TimesformerConfig(), frames=(1, 8))
    assert list(counts.index) == [1, 8] and gflop.loc[8, "joint: linear"] == pytest.approx(22.2, abs=0.05)
    assert gflop.loc[8, "divided: linear"] > gflop.loc[8, "joint: linear"]


def test_attention_evenness_from_even_to_one_patch():
    from utils.vit import attention_evenness

    maps = np.stack([np.full((4, 4), 0.05), np.eye(1, 16).reshape(4, 4)])
    result = attention_evenness(maps)
    assert result["entropy"] == pytest.approx([1.0, 0.0]) and result["peak"] == pytest.approx([1.0, 16.0])
    assert result["effective"] == pytest.approx([16.0, 1.0])
    half = np.zeros((1, 4, 4))
    half[0, 0, :2] = 1  # two patches share the attention: two effective patches
    assert attention_evenness(half)["effective"] == pytest.approx([2.0])
    with pytest.raises(ValueError, match="non-negative"):
        attention_evenness(np.zeros((1, 4, 4)))


def test_show_cls_attention_marks_a_reference_on_the_colour_bar():
    import matplotlib

    matplotlib.use("Agg")
    maps = np.full((1, 4, 4), 0.05)
    maps[0, 0, 0] = 0.2
    fig = show_cls_attention([np.zeros((8, 8))], maps, reference=0.05)
    bar = fig.axes[-1]
    assert any(tuple(line.get_ydata()) == (0.05, 0.05) for line in bar.lines)
    outlined = [p for p in fig.axes[0].patches if p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)]
    assert len(outlined) == 1 and outlined[0].get_xy() == pytest.approx((0.12, 0.12))  # only the patch above 0.05
    with pytest.raises(ValueError, match="outside the colour scale"):
        show_cls_attention([np.zeros((8, 8))], maps, reference=0.5)


def test_classify_grey_levels_matches_predict_on_the_dataset_digits():
    from utils.vit import classify_grey_levels

    digits = load_digits_dataset(validation_size=0.2, seed=0)
    torch.manual_seed(0)
    cnn, processor = SmallCNN(), digits_processor()
    X, _ = digits_arrays(digits["validation"])
    assert (classify_grey_levels(cnn, X[:20], processor)
            == predict(cnn, prepare(digits["validation"].select(range(20)), processor))).all()


def test_attention_distance_is_zero_on_itself_and_the_even_spread_on_a_uniform_map():
    from utils.vit import attention_distance

    grid, tokens = 2, 5
    to_itself = torch.eye(tokens).expand(1, 1, 1, tokens, tokens)
    assert attention_distance(to_itself, grid, patch_size=2) == pytest.approx(np.zeros((1, 1)))
    uniform = torch.full((1, 1, 1, tokens, tokens), 1 / tokens)
    # on a 2 x 2 grid of 2-pixel patches each query sees itself (0), two neighbours (2) and a diagonal (2 sqrt 2)
    assert attention_distance(uniform, grid, patch_size=2)[0, 0] == pytest.approx((0 + 2 + 2 + 2 * np.sqrt(2)) / 4)
    with pytest.raises(ValueError, match="shape"):
        attention_distance(torch.ones(1, 1, 1, 4, 4), grid, patch_size=2)


def test_position_similarity_is_one_on_the_diagonal():
    from utils.vit import position_similarity

    torch.manual_seed(0)
    model = ViTForImageClassification(small_vit_config())
    similarity = position_similarity(model)
    assert similarity.shape == (4, 4, 4, 4)
    assert all(similarity[r, c, r, c] == pytest.approx(1.0) for r in range(4) for c in range(4))
    assert np.allclose(similarity.reshape(16, 16), similarity.reshape(16, 16).T, atol=1e-6)


def test_swin_attention_flops_follow_the_papers_equations():
    from utils.vit import swin_attention_flops

    small = swin_attention_flops(2, 2, 3, window=1)  # hw = 4, C = 3, M = 1
    assert small == {"tokens": 4, "global": 4 * 4 * 9 + 2 * 16 * 3, "window": 4 * 4 * 9 + 2 * 1 * 4 * 3}
    assert small["global"] == 240 and small["window"] == 168
    whole = swin_attention_flops(7, 7, 96, window=7)  # one window covers the grid: the two are the same
    assert whole["global"] == whole["window"]
    stage1 = swin_attention_flops(56, 56, 96)  # Swin-T's first stage at 224 pixels
    assert stage1["global"] == 115_605_504 + 1_888_223_232 and stage1["window"] == 115_605_504 + 29_503_488
    with pytest.raises(ValueError, match="positive"):
        swin_attention_flops(0, 4, 8)


def test_summarise_cls_attention_against_hand_values():
    from utils.vit import summarise_cls_attention

    images = np.zeros((2, 4, 4))
    images[:, 0, 0] = 5  # ink in the top-left patch only
    maps = np.array([[[0.7, 0.1], [0.1, 0.1]],    # peaks on the inked patch
                     [[0.1, 0.1], [0.1, 0.7]]])   # peaks on a blank one
    s = summarise_cls_attention(maps, images, patch_size=2)
    assert s["ink_share"] == pytest.approx([0.7, 0.1]) and list(s["peak_on_blank"]) == [False, True]
    assert list(s["above_twice"]) == [1, 1] and s["ink_patches"] == pytest.approx(0.25)
    assert s["peak"] == pytest.approx([2.8, 2.8])
    with pytest.raises(ValueError, match="images"):
        summarise_cls_attention(maps, images[:, :3], patch_size=2)


def test_describe_run_reads_the_last_and_best_evaluation():
    import pandas as pd
    from utils.vit import describe_run

    history = pd.DataFrame({"step": [1, 2, 3, 4, 5, 6], "loss": [1.0, 0.5, 0.4, 0.3, 0.2, 0.1],
                            "accuracy": [np.nan, 0.9, np.nan, 0.95, np.nan, 0.92], "seconds": [1, 2, 3, 4, 5, 6.2]})
    line = describe_run("ViT", history)
    assert line.startswith("ViT: 6 steps in 6 s; validation accuracy at the last step 92.0%; highest")
    assert "highest 95.0%, at step 4" in line and line.endswith("training loss at the end 0.300")
    with pytest.raises(ValueError, match="no validation accuracy"):
        describe_run("CNN", history.assign(accuracy=np.nan))


def test_describe_run_reports_a_tie_for_the_highest_evaluation():
    import pandas as pd
    from utils.vit import describe_run

    history = pd.DataFrame({"step": [1, 2, 3, 4, 5, 6], "loss": [1.0, 0.5, 0.4, 0.3, 0.2, 0.1],
                            "accuracy": [np.nan, 0.95, np.nan, 0.9, np.nan, 0.95], "seconds": [1, 2, 3, 4, 5, 6]})
    line = describe_run("ViT", history)
    assert "highest 95.0%, a tie of 2 evaluations, first at step 2, last at step 6 (the last evaluation);" in line
    earlier = describe_run("ViT", history.assign(accuracy=[np.nan, 0.95, np.nan, 0.95, np.nan, 0.9]))
    assert "a tie of 2 evaluations, first at step 2, last at step 4;" in earlier


def test_seed_error_ratios_divide_mean_errors_per_size():
    import pandas as pd
    from utils.vit import seed_error_ratios, test_labels

    labels = test_labels()
    def wrong(k):  # the labels with the first k digits changed
        p = labels.copy()
        p[:k] = (p[:k] + 1) % 10
        return "".join(map(str, p))
    seeds = pd.DataFrame({"model": ["ViT", "ViT", "CNN", "CNN", "CNN"], "training_digits": [100, 100, 100, 100, 50],
                          "test_predictions": [wrong(4), wrong(8), wrong(2), wrong(4), wrong(1)]})
    ratios = seed_error_ratios(seeds)  # at 100 digits: 6 ViT errors per 3 CNN errors; at 50 the CNN alone
    assert list(ratios.index) == [100] and ratios.loc[100] == pytest.approx(2.0)


def test_cnn_over_seeds_names_missing_input():
    from utils.vit import cnn_over_seeds

    with pytest.raises(ValueError, match="at least one dataset"):
        cnn_over_seeds({}, seeds=(0,))


def test_word_form_table_counts_each_form_and_sums_them():
    from utils import vit

    table = vit.word_form_table("She married. They marry; marriage, married! Breath.",
                                {"marry": ("once", ["marry", "married", "marriage"]), "blink": ("often", ["blink"])})
    assert table.loc["marry", "times written"] == 4
    assert table.loc["marry", "the words written"] == "married 2, marry 1, marriage 1"
    assert table.loc["blink", "times written"] == 0 and table.loc["blink", "the words written"] == ""
    with pytest.raises(ValueError, match="acts is empty"):
        vit.word_form_table("text", {})


def test_choice_checks_follow_their_recipe():
    """The shipped checks of the ViT's choice (scripts/vit_digits_seeds.py beyond / shift): one row per setting of
    SEED_GRID_BEYOND with seed 0 and no shift; the shift rows train the chosen setting with max_dx 1, seeds 0-2; every
    command names its stage and the file it wrote."""
    import shlex

    import pandas as pd
    from utils import data_path, vit

    tuning, _ = vit.load_seed_records(data_path("vit_digits"))
    beyond = pd.read_csv(data_path("vit_digits", "beyond_vit.csv"))
    shift = pd.read_csv(data_path("vit_digits", "shift_vit.csv"))
    expected = pd.DataFrame(vit.SEED_GRID_BEYOND["ViT"])
    pd.testing.assert_frame_equal(beyond[expected.columns].reset_index(drop=True), expected, check_dtype=False)
    assert (beyond["seed"] == 0).all() and (beyond["max_dx"] == 0).all()
    vit_rows = tuning[tuning["model"] == "ViT"]
    best = vit_rows.loc[vit_rows["validation_accuracy"].idxmax()]
    for key in vit.SEED_GRIDS["ViT"]:
        assert (shift[key] == best[key]).all(), key
    assert sorted(shift["seed"]) == [0, 1, 2] and (shift["max_dx"] == 1).all()
    for records, stage in ((beyond, "beyond"), (shift, "shift")):
        words = shlex.split(records["command"].iloc[0])
        assert words[:3] == ["python", "scripts/vit_digits_seeds.py", stage]
        assert words[words.index("--out") + 1] == f"data/vit_digits/{stage}_vit.csv"
        assert records["validation_accuracy"].between(0, 1).all()




def test_digits_mlp_is_the_size_of_the_vit_and_the_cnn_dense_share_is_most_of_it():
    from utils import vit

    mlp = vit.DigitsMLP()
    assert abs(sum(p.numel() for p in mlp.parameters()) - 203_594) < 2_000
    assert mlp(pixel_values=torch.zeros(2, 3, 8, 8)).logits.shape == (2, 10)
    assert vit.dense_share(vit.SmallCNN()) == pytest.approx((64 * 16 * 176 + 176) / 201_562)


def test_locality_comparisons_pair_by_seed_and_by_digit():
    import pandas as pd
    from utils import vit

    labels = vit.test_labels()
    text = lambda p: "".join(map(str, p))  # noqa: E731
    wrong = (labels + 1) % 10
    some_wrong = np.where(np.arange(len(labels)) < 36, wrong, labels)  # 10% wrong
    runs = pd.DataFrame({"model": ["A", "A", "B", "B", "B"], "seed": [0, 1, 0, 1, 2],
                         "test_predictions": [text(labels), text(labels), text(some_wrong), text(some_wrong), text(labels)]})
    # different models: every seed of each (B's three), Welch over seeds; B's digits right on 2/3 or 3/3 of its seeds
    table = vit.locality_comparisons(runs, pairs=[("A", "B")])
    assert table.loc["A minus B", "seeds"] == "2 and 3"
    assert table.loc["A minus B", "over test digits (paired bootstrap)"].startswith("+6.7 points")
    assert table.loc["A minus B", "over seeds"].startswith("+6.7 points")
    assert table.loc["A minus B", "over seeds"].endswith("(Welch t; exact permutation p = 0.40)")  # 4 of 10 deals
    # runs that share their start seed by seed: only the seeds both have, paired
    paired = vit.locality_comparisons(runs, pairs=[("A", "B")], paired_seeds=True)
    assert paired.loc["A minus B", "seeds"] == "2 and 2"  # seed 2 of B has no partner
    assert paired.loc["A minus B", "over test digits (paired bootstrap)"].startswith("+10.0 points")
    assert paired.loc["A minus B", "over seeds"].startswith("+10.0 points") and "(paired t)" in paired.loc["A minus B", "over seeds"]
    with pytest.raises(ValueError, match="need at least 2 each"):
        vit.locality_comparisons(runs[runs["seed"] != 1], pairs=[("A", "B")])


def test_shuffled_vit_record_pairs_with_the_seed_study_by_seed():
    """The shipped `--part shuffled` record of scripts/vit_digits_locality.py: the 2 x 2 ViT's chosen setting with the
    seed study's five seeds, on all training digits, each row with a prediction for every test digit and the command
    that wrote it; `locality_runs` sets it beside the unshuffled runs of the same seeds."""
    import pandas as pd
    from utils import data_path, vit

    shuffled = pd.read_csv(data_path("vit_digits", "locality_shuffled.csv"), dtype={"test_predictions": str})
    tuning, seeds = vit.load_seed_records(data_path("vit_digits"))
    plain = seeds[(seeds["model"] == "ViT") & (seeds["training_digits"] == shuffled["training_digits"].iloc[0])]
    assert sorted(shuffled["seed"]) == sorted(plain["seed"]) == [0, 1, 2, 3, 4]
    for key in vit.SEED_GRIDS["ViT"]:
        assert set(shuffled[key]) == set(plain[key]), key
    assert (shuffled["stage"] == "shuffled").all() and shuffled["test_predictions"].str.len().eq(360).all()
    assert set(shuffled["command"]) == {"python scripts/vit_digits_locality.py --part shuffled --out "
                                        "data/vit_digits/locality_shuffled.csv"}
    runs = vit.locality_runs(shuffled, seeds)
    assert runs.groupby("model")["seed"].nunique().to_dict() == {"ViT 2 x 2, pixels shuffled": 5, "ViT 2 x 2": 5, "CNN": 5}


def test_put_stem_replaces_the_patch_embedding_of_a_trainable_vit():
    from utils import vit

    torch.manual_seed(0)
    model = vit.build_digits_model("ViT")
    stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 64, 2, stride=2))
    vit.put_stem(model, stem)
    out = model(pixel_values=torch.zeros(2, 3, 8, 8), labels=torch.tensor([1, 2]))
    out.loss.backward()
    assert out.logits.shape == (2, 10) and stem[0].weight.grad is not None


def test_probe_table_fits_one_linear_probe_per_row(capsys):
    from utils import vit

    rng = np.random.default_rng(0)
    y = {split: np.arange(40) % 2 for split in ("train", "validation", "test")}
    good = {split: y[split][:, None] + 0.1 * rng.standard_normal((40, 3)) for split in y}
    noise = {split: rng.standard_normal((40, 3)) for split in y}
    table = vit.probe_table({"signal": good, "noise": noise}, y)
    assert list(table.index) == ["signal", "noise"] and table.loc["signal", "validation accuracy"] == "100.0%"
    assert table.loc["signal", "errors"] == 0 and table.loc["noise", "errors"] > 5
    summary = {"ink_patches": 0.75, "ink_share": np.array([0.8, 0.9]), "peak_on_blank": np.array([True, False]),
               "entropy": np.array([0.9, 0.9]), "effective": np.array([12.0, 12.0]), "peak": np.array([2.0, 3.0]),
               "above_twice": np.array([1, 1]), "patches": 16}
    vit.print_cls_attention_summary(summary, shown={"digit 0": 0, "digit 1": 1})
    out = capsys.readouterr().out
    assert "75% of patches hold ink; they get 85%" in out and "of the 2 shown: digit 0)" in out and "of the 16 patches" in out


def test_print_paired_seed_tests_prints_one_bootstrap_per_size_and_seed_lines_on_request(capsys):
    from utils import data_path, vit

    _, seeds = vit.load_seed_records(data_path("vit_digits"))
    both = seeds.groupby("training_digits")["model"].agg(lambda m: {"ViT", "CNN"} <= set(m))
    vit.print_paired_seed_tests(seeds)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == both.sum() and all("points (95% CI" in line for line in lines)
    vit.print_paired_seed_tests(seeds[seeds["training_digits"] == both.index[both][0]], per_seed=True)
    assert sum(line.startswith("  seed ") for line in capsys.readouterr().out.splitlines()) == 5
