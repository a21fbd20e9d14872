"""Tests of utils.igpt: the grey-level tokens, the image GPT built from its config (checked against
the transformers class's own computations), sampling completions, the probe features and the
shipped checkpoint (no Hub, no timing)."""
import numpy as np
import pytest
import torch
from transformers import ImageGPTForCausalImageModeling

from utils import igpt
from utils.vit import digits_arrays, load_digits_dataset


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset(validation_size=0.2)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return ImageGPTForCausalImageModeling(igpt.small_igpt_config(n_embd=16, n_layer=2, n_head=2)).eval()


def test_tokens_put_the_start_token_first_and_round_trip():
    pixels = np.arange(2 * 64).reshape(2, 64) % 17
    tokens = igpt.to_tokens(pixels)
    assert tokens.shape == (2, 65) and tokens.dtype == torch.long
    assert (tokens[:, 0] == igpt.SOS).all() and igpt.SOS == 17
    assert np.array_equal(igpt.to_pixels(tokens), pixels.reshape(2, 8, 8))
    with pytest.raises(ValueError, match="0..16"):
        igpt.to_tokens(np.full((1, 64), 17))
    with pytest.raises(ValueError, match="64"):
        igpt.to_tokens(np.zeros((1, 63)))
    with pytest.raises(ValueError, match="start token"):
        igpt.to_pixels(torch.full((1, 64), igpt.SOS))


def test_config_predicts_the_17_grey_levels_but_never_the_start_token(tiny):
    config = igpt.small_igpt_config()
    assert config.vocab_size == 18 and config.n_positions == 65
    assert tiny.lm_head.out_features == igpt.NUM_LEVELS == 17


def test_pixel_nll_is_the_next_pixel_cross_entropy(tiny):
    tokens = igpt.to_tokens(np.random.default_rng(0).integers(0, 17, (6, 64)))
    with torch.no_grad():
        logits = tiny(input_ids=tokens).logits  # (6, 65, 17)
    manual = -torch.log_softmax(logits[:, :-1], -1).gather(-1, tokens[:, 1:, None]).mean()
    assert igpt.pixel_nll(tiny, tokens, batch_size=4) == pytest.approx(manual.item(), rel=1e-5)


def test_token_shift_keeps_the_start_token_and_moves_pixels_sideways_only():
    image = np.zeros((8, 8), dtype=int)
    image[2, 4] = 9
    rows = list(igpt.to_tokens(np.tile(image.ravel(), (100, 1))))
    batch = igpt.TokenShift(max_shift=1, seed=0)(rows)
    assert torch.equal(batch["input_ids"], batch["labels"]) and (batch["input_ids"][:, 0] == igpt.SOS).all()
    places = {tuple(np.argwhere(p)[0]) for p in igpt.to_pixels(batch["input_ids"])}
    assert places == {(2, 3), (2, 4), (2, 5)}


def test_complete_keeps_the_given_rows_and_samples_grey_levels(tiny, digits):
    tokens = igpt.to_tokens(digits_arrays(digits["test"])[0][:3])
    out = igpt.complete(tiny, tokens, rows_given=4, num_samples=2, seed=0)
    assert out.shape == (3, 2, 8, 8) and out.min() >= 0 and out.max() <= 16
    given = igpt.to_pixels(tokens)[:, None, :4]
    assert np.array_equal(out[:, :, :4], np.broadcast_to(given, (3, 2, 4, 8)))
    assert np.array_equal(out, igpt.complete(tiny, tokens, rows_given=4, num_samples=2, seed=0))
    with pytest.raises(ValueError, match="rows_given"):
        igpt.complete(tiny, tokens, rows_given=8)


def test_features_at_layer_zero_are_the_mean_input_embeddings(tiny):
    tokens = igpt.to_tokens(np.random.default_rng(1).integers(0, 17, (4, 64)))
    with torch.no_grad():
        embeddings = tiny.transformer.wte(tokens) + tiny.transformer.wpe(torch.arange(65))
    np.testing.assert_allclose(igpt.igpt_features(tiny, tokens, layer=0), embeddings[:, 1:].mean(1).numpy(),
                               rtol=1e-5, atol=1e-6)
    assert igpt.igpt_features(tiny, tokens).shape == (4, 16)  # default: the middle layer
    by_layer = igpt.igpt_features(tiny, tokens, layer=range(3))  # one pass, every layer: the same numbers
    assert list(by_layer) == [0, 1, 2]
    for k, features in by_layer.items():
        np.testing.assert_array_equal(features, igpt.igpt_features(tiny, tokens, layer=k))
    side_by_side = igpt.igpt_features(tiny, tokens, pool=False)
    assert side_by_side.shape == (4, 64 * 16)
    np.testing.assert_allclose(side_by_side.reshape(4, 64, 16).mean(1), igpt.igpt_features(tiny, tokens), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="layer"):
        igpt.igpt_features(tiny, tokens, layer=3)


def test_show_completions_checks_its_shapes():
    with pytest.raises(ValueError, match="samples"):
        igpt.show_completions(np.zeros((2, 64)), np.zeros((3, 4, 8, 8)))


def test_shipped_igpt_matches_its_record_and_beats_per_position_histograms(digits):
    model, metrics = igpt.load_small_igpt()
    X_train = digits_arrays(digits["train"])[0].astype(int)
    X_val = digits_arrays(digits["validation"])[0].astype(int)
    assert metrics["train_digits"] == len(X_train) and metrics["validation_digits"] == len(X_val)
    assert sum(p.numel() for p in model.parameters()) == metrics["parameters"]
    nll = igpt.pixel_nll(model, igpt.to_tokens(X_val))
    assert nll == pytest.approx(metrics["validation_nll_per_pixel"], abs=2e-3)
    counts = np.stack([np.bincount(c, minlength=17) for c in X_train.T]) + 1
    histogram_nll = -np.log(counts / counts.sum(1, keepdims=True))[np.arange(64), X_val].mean()
    assert nll < 0.75 * histogram_nll


def test_reference_completions_keep_the_given_rows_and_fill_the_rest_from_training_digits():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 17, size=(30, 64))
    given = train[:4].copy()
    given[:, 32:] = 0  # the bottom half of the given digits is never read
    made = igpt.reference_completions(train, given, rows_given=4, num_samples=3, seed=0)
    assert set(made) == {"nearest top halves", "one histogram per position"}
    for completions in made.values():
        assert completions.shape == (4, 3, 8, 8)
        assert (completions.reshape(4, 3, 64)[:, :, :32] == given[:, None, :32]).all()
    # each given digit is its own nearest top half among the training digits: its first copy is the digit itself
    assert (made["nearest top halves"][:, 0].reshape(4, 64) == train[:4]).all()
    drawn = made["one histogram per position"].reshape(-1, 64)[:, 32:]
    assert drawn.min() >= 0 and drawn.max() <= 16
    with pytest.raises(ValueError, match="rows_given"):
        igpt.reference_completions(train, given, rows_given=8)
