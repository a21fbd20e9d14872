import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from utils import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_label_points_leaves_no_overlap():
    fig, ax = plt.subplots()
    x = np.array([1.0, 1.01, 1.02, 1.03, 2.0])
    y = np.array([1.0, 1.0, 1.01, 0.99, 1.0])
    ax.scatter(x, y)
    texts = plotting.label_points(ax, x, y, ["alpha", "beta", "gamma", "delta", "far"])
    renderer = fig.canvas.get_renderer()
    boxes = [plotting._text_box(t, renderer) for t in texts]  # text only, at its final offset
    for box in boxes:  # and the labels are near their points, not thrown away
        assert box.y0 > -50 and box.y1 < fig.bbox.height + 50
    assert not any(boxes[i].overlaps(boxes[j]) for i in range(5) for j in range(i + 1, 5))


def test_label_points_checks_lengths():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="length"):
        plotting.label_points(ax, [1, 2], [1], ["a", "b"])


def test_power_law_is_log_log_and_straight():
    x = np.logspace(6, 10, 5)
    ax = plotting.plot_power_law(x, {"L(N)": (8.8e13 / x) ** 0.076}, xlabel="N", ylabel="loss")
    assert ax.get_xscale() == ax.get_yscale() == "log"
    xs, ys = ax.lines[0].get_data()
    slope = np.polyfit(np.log(xs), np.log(ys), 1)[0]
    assert slope == pytest.approx(-0.076)


def test_show_masks_titles_give_density_and_save(tmp_path, monkeypatch):
    monkeypatch.setattr(plotting, "images_path", lambda name: tmp_path / name)
    band = np.abs(np.subtract.outer(np.arange(8), np.arange(8))) <= 1
    fig = plotting.show_masks({"band": band, "full": np.ones((8, 8), bool)}, save="masks.png")
    titles = [ax.get_title() for ax in fig.axes[:2]]
    assert titles == [f"band\ndensity {band.mean():.1%}", "full\ndensity 100.0%"]
    assert (tmp_path / "masks.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="2-D"):
        plotting.show_masks({"bad": np.ones(3)})


def test_heatmap_checks_shape_and_annotates():
    ax = plotting.plot_heatmap(np.eye(2), ["a", "b"], ["x", "y"], fmt=".1f")
    assert sorted(t.get_text() for t in ax.texts) == ["0.0", "0.0", "1.0", "1.0"]
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    assert colours == {"0.0": "white", "1.0": "black"}  # viridis: dark low, light high
    blues = plotting.plot_heatmap(np.eye(2), ["a", "b"], ["x", "y"], fmt=".1f", cmap="Blues")
    assert {t.get_text(): t.get_color() for t in blues.texts} == {"0.0": "black", "1.0": "white"}
    with pytest.raises(ValueError, match="shape"):
        plotting.plot_heatmap(np.eye(2), ["a"], ["x", "y"])



def test_heatmap_fixed_colour_scale():
    ax = plotting.plot_heatmap(np.array([[0.2, 0.4]]), ["a"], ["x", "y"], vmin=0, vmax=1)
    assert ax.images[0].get_clim() == (0, 1)  # not stretched to 0.2..0.4
    assert plotting.plot_heatmap(np.array([[0.2, 0.4]]), ["a"], ["x", "y"]).images[0].get_clim() == (0.2, 0.4)
    with pytest.raises(ValueError, match="vmin"):
        plotting.plot_heatmap(np.eye(2), ["a", "b"], ["x", "y"], per_row=True, vmin=0)


def test_heatmap_colour_bar_can_be_left_to_a_neighbour():
    fig, (left, right) = plt.subplots(1, 2)
    plotting.plot_heatmap(np.eye(2), ["a", "b"], ["x", "y"], ax=left, vmin=0, vmax=1, colorbar=False)
    assert len(fig.axes) == 2  # no colour bar axes added
    plotting.plot_heatmap(np.eye(2), ["a", "b"], ["x", "y"], ax=right, vmin=0, vmax=1, cbar_label="p")
    assert len(fig.axes) == 3 and fig.axes[2].get_ylabel() == "p"
    plt.close(fig)


def test_heatmap_per_row_colours_each_row_on_its_own_scale():
    ax = plotting.plot_heatmap(np.array([[0, 1000], [0, 1], [5, 5]]), ["ids", "bits", "flat"], ["x", "y"],
                               fmt=".0f", per_row=True)
    shown = ax.images[0].get_array()
    assert np.allclose(shown, [[0, 1], [0, 1], [0, 0]])  # 1 is as bright in its row as 1000 in its own
    assert sorted(t.get_text() for t in ax.texts) == ["0", "0", "1", "1000", "5", "5"]  # the values themselves
    assert len(ax.figure.axes) == 1  # no colour bar: it would describe no row
    with pytest.raises(ValueError, match="annotate"):
        plotting.plot_heatmap(np.eye(2), ["a", "b"], ["x", "y"], per_row=True, annotate=False)

def test_show_images_grid_and_titles():
    fig = plotting.show_images([np.zeros((4, 4)), np.ones((4, 4, 3))], titles=["a", "b"], ncols=2)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    with pytest.raises(ValueError, match="titles"):
        plotting.show_images([np.zeros((4, 4))], titles=["a", "b"])


def test_waveform_spectrogram_shares_the_time_axis():
    sr = 16000
    t = np.arange(sr) / sr
    fig = plotting.plot_waveform_spectrogram(np.sin(2 * np.pi * 440 * t), sr)
    top, bottom = fig.axes[:2]
    assert bottom.images[0].get_extent()[1] == pytest.approx(1.0)
    mel = bottom.images[0].get_array()
    assert mel.shape[0] == 80
    # a 440 Hz tone puts its energy in the low mel bins
    assert np.argmax(mel.mean(axis=1)) < 40
    with pytest.raises(ValueError, match="1-D"):
        plotting.plot_waveform_spectrogram(np.zeros((2, 2)), sr)


def test_benchmark_one_line_per_kernel():
    df = pd.DataFrame({"n": [256, 512, 256, 512], "ms": [1.0, 4.0, 1.0, 2.0],
                       "kernel": ["sdpa", "sdpa", "linear", "linear"]})
    ax = plotting.plot_benchmark(df)
    assert sorted(line.get_label() for line in ax.lines) == ["linear", "sdpa"]
    with pytest.raises(ValueError, match="columns"):
        plotting.plot_benchmark(df, hue="pattern")


def test_benchmark_labels_the_measured_sizes():
    df = pd.DataFrame({"n": [1024, 4096, 8192], "ms": [1.0, 4.0, 9.0], "kernel": ["flex"] * 3})
    ax = plotting.plot_benchmark(df)
    ax.figure.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1k", "4k", "8k"]
    assert not any(t.get_text() for t in ax.xaxis.get_minorticklabels())
    assert ax.get_xlabel() == "n"
    assert plotting.plot_benchmark(df, xlabel="n (tokens)").get_xlabel() == "n (tokens)"


def test_benchmark_guides_have_their_slopes_and_keep_the_data_range():
    df = pd.DataFrame({"n": [1024, 2048, 4096] * 2, "ms": [1.0, 2.0, 4.0, 1.0, 4.0, 16.0], "kernel": ["a"] * 3 + ["b"] * 3})
    plain = plotting.plot_benchmark(df)
    ax = plotting.plot_benchmark(df, guides=(1, 2))
    guides = [line for line in ax.lines if line.get_label().startswith("guide")]
    assert len(guides) == 2 and ax.get_ylim() == plain.get_ylim()
    for line, slope in zip(guides, (1, 2)):
        x, y = line.get_data()
        assert y[0] == pytest.approx(1.0) and np.log(y[-1] / y[0]) / np.log(x[-1] / x[0]) == pytest.approx(slope)
    assert not [line for line in plotting.plot_benchmark(df, log=False, guides=(1,)).lines if line.get_label().startswith("guide")]


def test_plot_training_draws_loss_and_the_evaluated_metric():
    history = pd.DataFrame({"step": range(1, 101), "loss": np.linspace(2.0, 0.5, 100)})
    history["accuracy"] = np.nan
    history.loc[[49, 99], "accuracy"] = [0.6, 0.9]
    ax = plotting.plot_training(history, "accuracy", loss_label="contrastive loss")
    raw, mean = ax.lines
    assert list(raw.get_xdata()) == list(range(1, 101))
    assert mean.get_ydata()[-1] == pytest.approx(history["loss"].tail(2).mean())  # window 100 // 40
    (right,) = [a for a in ax.figure.axes if a is not ax]
    assert list(right.lines[0].get_ydata()) == [0.6, 0.9]  # only the evaluated rows
    assert ax.get_ylabel() == "contrastive loss" and right.get_ylabel() == "accuracy"


def test_plot_training_names_a_missing_column():
    history = pd.DataFrame({"step": [1, 2], "loss": [1.0, 0.9]})
    with pytest.raises(ValueError, match="'accuracy'"):
        plotting.plot_training(history, "accuracy")


def test_figure_description_names_the_figure_by_its_titles():
    fig, axes = plt.subplots(1, 2)
    fig.suptitle("two   patterns")
    axes[0].set_title("band")
    axes[1].set_title("BigBird\nrandom")
    assert plotting.figure_description(fig) == "two patterns: band; BigBird random"
    fig, ax = plt.subplots()
    ax.set_xlabel("tokens")
    ax.set_ylabel("ms")
    assert plotting.figure_description(fig) == "ms against tokens"  # no title: its axes say it
    fig, axes = plt.subplots(2, 6)
    for i, ax in enumerate(axes.flat):
        ax.set_title(f"digit {i}")
    text = plotting.figure_description(fig)
    assert text.endswith("digit 7; and 4 more panels"), text
    assert plotting.figure_description(plt.figure()) is None


def test_inline_figures_carry_their_description_as_alt_text():
    from matplotlib_inline import backend_inline

    before = backend_inline._fetch_figure_metadata
    backend_inline._fetch_figure_metadata = getattr(before, "wrapped", before)  # as before any set-up
    try:
        plotting.describe_inline_figures()
        plotting.describe_inline_figures()  # a second set-up cell: still one wrapper
        fetch = backend_inline._fetch_figure_metadata
        assert fetch.describes_figures and fetch.wrapped is getattr(before, "wrapped", before)
        fig, ax = plt.subplots()
        ax.set_title("loss against steps")
        assert fetch(fig) == {"alt": "loss against steps"}
        assert fetch(plt.figure()) is None  # nothing to say: no metadata, as before
    finally:
        backend_inline._fetch_figure_metadata = before


def test_benchmark_styles_get_their_own_markers_and_the_axis_ends_at_the_data():
    df = pd.DataFrame({"n": [256, 512] * 2, "ms": [1.0, 2.0, 1.0, 2.0], "kernel": ["sdpa"] * 4,
                       "mask": ["bidirectional"] * 2 + ["causal"] * 2})
    ax = plotting.plot_benchmark(df, style="mask")
    assert {line.get_marker() for line in ax.lines} == {"o", "x"}
    assert {line.get_linestyle() for line in ax.lines} == {"-", "--"}
    flat = plotting.plot_benchmark(df, style="mask", log=False)
    assert flat.get_xscale() == "linear"
    left, right = flat.get_xlim()
    assert 240 < left <= 256 and 512 <= right < 530


def test_wav2vec_u_schematic_names_both_sides():
    fig = plotting.plot_wav2vec_u()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for part in ("wav2vec 2.0", "generator", "phonemizer", "discriminator", "k-means"):
        assert part in texts


def test_benchmark_legend_outside_guides_labelled_and_band_shaded():
    df = pd.DataFrame({"n": [1024, 2048, 4096], "ms": [1.0, 2.0, 4.0], "kernel": ["a"] * 3,
                       "passes": [[0.9, 1.1], [1.8, 2.5], [3.9, 4.2]]})
    ax = plotting.plot_benchmark(df, guides=(1, 2), band="passes")
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1  # right of the axes
    assert sorted(t.get_text() for t in ax.texts) == ["$n^{1}$", "$n^{2}$"]
    (shade,) = ax.collections
    ys = shade.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(0.9) and ys.max() == pytest.approx(4.2)
    assert "a: range of passes" in [t.get_text() for t in ax.get_legend().get_texts()]
    for text in ax.texts:  # guide labels sit inside the axes, not clipped at its edge
        assert text.get_va() == "top" and text.xyann[1] < 0
    ax = plotting.plot_benchmark(df, band="passes", band_label="the passes")
    assert "a: range of the passes" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(ValueError, match="columns"):
        plotting.plot_benchmark(df, band="missing")


def test_plot_differences_draws_each_comparison_in_points_top_to_bottom():
    from utils.evaluation import Comparison

    def comparison(d, low, high):
        return Comparison(d, low, high, 0.5, 0.0, 0.0, 10, "test", percent=True)

    panels = {"first": {"a: x": comparison(0.10, 0.05, 0.20), "b: y": comparison(-0.30, -0.40, -0.10)},
              "second": {"a: x": comparison(0.0, -0.1, 0.1), "b: y": comparison(0.02, 0.01, 0.03)}}
    fig = plotting.plot_differences(panels)
    first = fig.axes[0]
    points = first.lines[0].get_data()  # the errorbar's markers: x = difference in points, y = row (top row highest)
    np.testing.assert_allclose(points[0], [10.0, -30.0])
    assert points[1][0] > points[1][1]
    bars = first.collections[0].get_segments()  # one horizontal bar per row, from low to high
    np.testing.assert_allclose(sorted(seg[:, 0].tolist() for seg in bars), [[-40.0, -10.0], [5.0, 20.0]])
    heights = {t.get_text(): t.get_position()[1] for t in first.get_yticklabels()}
    assert heights["a: x"] > heights["b: y"]  # the first row on top
    with pytest.raises(ValueError, match="rows"):
        plotting.plot_differences({"first": panels["first"], "other": {"a: x": comparison(0, 0, 0)}})
    with pytest.raises(TypeError, match="not a Comparison"):
        plotting.plot_differences({"first": {"a: x": 0.1}})
