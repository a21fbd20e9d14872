"""Tests of utils.clip: the picture-caption generator, the contrastive loss, the tokenizer."""
import math

import numpy as np
import pytest
import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizerFast

from utils import clip


def _pixels(examples):
    return [np.asarray(e["image"]) for e in examples]


# ---- the generator -----------------------------------------------------------------------------

def test_same_seed_same_examples_other_seed_other_examples():
    a, b = clip.make_examples(40, seed=3), clip.make_examples(40, seed=3)
    c = clip.make_examples(40, seed=4)
    assert [e["caption"] for e in a] == [e["caption"] for e in b]
    assert all(np.array_equal(x, y) for x, y in zip(_pixels(a), _pixels(b)))
    assert [e["caption"] for e in a] != [e["caption"] for e in c]


def test_held_out_design():
    # one held-out pair per colour and per shape; training sees every colour and every shape
    assert sorted(c for c, _ in clip.HELD_OUT) == sorted(clip.COLOURS)
    assert sorted(s for _, s in clip.HELD_OUT) == sorted(clip.SHAPES)
    assert not set(clip.HELD_OUT) & set(clip.TRAIN_COMBOS)
    assert len(clip.TRAIN_COMBOS) + len(clip.HELD_OUT) == len(clip.COLOURS) * len(clip.SHAPES)
    assert clip.zero_shot_captions() == [
        "a red circle", "an orange square", "a yellow triangle", "a green diamond", "a blue star",
        "a purple cross"]


def test_training_examples_avoid_held_out_and_captions_say_what_is_drawn():
    examples = clip.make_examples(300, seed=0)
    pairs = {(e["colour"], e["shape"]) for e in examples}
    assert not pairs & set(clip.HELD_OUT)
    assert {c for c, _ in pairs} == set(clip.COLOURS) and {s for _, s in pairs} == set(clip.SHAPES)
    assert len({e["caption"].replace(e["colour"], "C").replace(e["shape"], "S") for e in examples}) > 8
    for e in examples:
        words = e["caption"].split()
        assert e["colour"] in words and e["shape"] in words
        # no other colour or shape word sneaks in
        assert not (set(words) & set(clip.COLOURS)) - {e["colour"]}
        assert not (set(words) & set(clip.SHAPES)) - {e["shape"]}
        assert e["image"].size == (32, 32) and e["image"].mode == "RGB"


def test_held_out_examples_use_only_held_out_pairs_and_the_plain_caption():
    examples = clip.make_examples(60, combos=clip.HELD_OUT, seed=1, templates=[0])
    assert {(e["colour"], e["shape"]) for e in examples} <= set(clip.HELD_OUT)
    assert all(e["caption"] in (f"a {e['colour']} {e['shape']}", f"an {e['colour']} {e['shape']}")
               for e in examples)


def test_caption_phrasings():
    scene = clip.Scene("blue", "star", "small", "left")
    assert clip.caption(scene) == "a blue star"
    assert clip.caption(scene, 3) == "a small blue star on the left"
    assert clip.caption(scene, 6) == "a star that is blue"
    assert len({clip.caption(scene, k) for k in range(len(clip.TEMPLATES))}) == len(clip.TEMPLATES)
    orange = clip.Scene("orange", "cross", "large", "top")
    assert clip.caption(orange) == "an orange cross"
    assert clip.caption(orange, 4) == "there is an orange cross at the top"
    assert clip.caption(orange, 1) == "a large orange cross"


def test_drawing_puts_the_colour_where_the_shape_is():
    for position, (fx, fy) in clip.POSITIONS.items():
        image = clip.draw_scene(clip.Scene("red", "circle", "large", position), image_size=40)
        pixels = np.asarray(image).astype(int)
        centre = pixels[round(fy * 40), round(fx * 40)]
        assert np.abs(centre - clip.COLOURS["red"]).max() <= 2
        corner = pixels[0, 0]
        assert corner[0] == corner[1] == corner[2]  # the background is grey
    # a large shape covers more pixels than a small one
    def coloured(size):
        px = np.asarray(clip.draw_scene(clip.Scene("green", "square", size, "middle"))).astype(int)
        return (np.ptp(px, axis=-1) > 40).sum()
    assert coloured("large") > 2 * coloured("small")


def test_each_shape_covers_the_area_its_geometry_says():
    # canonical drawings (no jitter): the share of the canvas the colour covers, anti-aliased edges
    # counted in part, against the area of the outline in units of r squared
    r = clip.SIZES["large"]
    expected = {
        "circle": math.pi,
        "square": 2.0,  # corners at radius r
        "triangle": 3 * math.sqrt(3) / 4 * 1.1**2,  # equilateral, corners at 1.1 r
        "diamond": 2 * 1.15 * 0.8,  # half-diagonals 1.15 r and 0.8 r
        "star": 5 * 1.1 * 0.45 * math.sin(math.pi / 5),  # ten corners at 1.1 r and 0.45 r
        "cross": 20 / 9,  # arms 2r long, 2r/3 thick
    }
    colour = np.array(clip.COLOURS["blue"], dtype=float)
    for shape, area in expected.items():
        px = np.asarray(clip.draw_scene(clip.Scene("blue", shape, "large", "middle"), image_size=128))
        px = px.astype(float)
        background = px[0, 0]
        share = ((px - background) @ (colour - background)) / ((colour - background) @ (colour - background))
        assert np.clip(share, 0, 1).mean() == pytest.approx(area * r * r, rel=0.04), shape


def test_generator_rejects_bad_input():
    with pytest.raises(ValueError, match="colour"):
        clip.Scene("teal", "circle", "small", "left")
    with pytest.raises(ValueError, match="shape"):
        clip.Scene("red", "hexagon", "small", "left")
    with pytest.raises(ValueError, match="position"):
        clip.Scene("red", "circle", "small", "corner")
    with pytest.raises(ValueError, match="template"):
        clip.caption(clip.Scene("red", "circle", "small", "left"), len(clip.TEMPLATES))
    with pytest.raises(ValueError, match="n must be"):
        clip.make_examples(0)
    with pytest.raises(ValueError, match="combos"):
        clip.make_examples(3, combos=[])
    with pytest.raises(ValueError, match="colour"):
        clip.make_examples(3, combos=[("teal", "circle")])
    with pytest.raises(ValueError, match="image_size"):
        clip.make_examples(3, image_size=8)


# ---- the loss ----------------------------------------------------------------------------------

def _tiny_clip(seed=0):
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, bos_token_id=0,
                         eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=16, patch_size=8),
        projection_dim=24, logit_scale_init_value=1.7,
    )
    return CLIPModel(config).eval()


def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 50, (n, 7), generator=g)
    ids[:, 0], ids[:, -1] = 0, 1
    return {"input_ids": ids, "pixel_values": torch.randn(n, 3, 16, 16, generator=g)}


def test_loss_equals_clip_model_loss():
    model, batch = _tiny_clip(), _batch()
    with torch.no_grad():
        out = model(**batch, return_loss=True)
        image = model.get_image_features(pixel_values=batch["pixel_values"]).pooler_output
        text = model.get_text_features(input_ids=batch["input_ids"]).pooler_output
        ours = clip.contrastive_loss(image, text, model.logit_scale)
        via_fn = clip.clip_loss_fn(model, batch)
    assert torch.allclose(ours, out.loss, atol=1e-5)
    assert torch.allclose(via_fn, out.loss, atol=1e-5)
    assert out.loss.item() > 0.5  # an untrained model: far from zero, so the match means something


def test_loss_gradients_equal_clip_model_gradients():
    model, batch = _tiny_clip(1), _batch(seed=1)
    model.zero_grad()
    model(**batch, return_loss=True).loss.backward()
    theirs = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    clip.clip_loss_fn(model, batch).backward()
    for name, grad in theirs.items():
        assert torch.allclose(model.get_parameter(name).grad, grad, atol=1e-5), name


def test_loss_by_hand():
    # two pairs, unit vectors at right angles, scale e^0 = 1: logits are the identity matrix
    image = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    expected = -math.log(math.e / (math.e + 1))
    assert clip.contrastive_loss(image, text, torch.tensor(0.0)).item() == pytest.approx(expected)
    # a large temperature makes matched pairs near certain
    assert clip.contrastive_loss(image, text, torch.tensor(5.0)).item() < 1e-3


def test_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        clip.contrastive_loss(torch.randn(4, 8), torch.randn(3, 8), torch.tensor(1.0))
    with pytest.raises(ValueError, match="2-D"):
        clip.contrastive_loss(torch.randn(8), torch.randn(8), torch.tensor(1.0))
    with pytest.raises(ValueError, match="logit_scale"):
        clip.contrastive_loss(torch.randn(4, 8), torch.randn(4, 8), torch.ones(2))


# ---- the tokenizer -----------------------------------------------------------------------------

def test_tokenizer_saves_and_loads_as_clip_tokenizer(tmp_path):
    texts = [e["caption"] for e in clip.make_examples(200, seed=0)]
    tokenizer = clip.build_tokenizer(texts, tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    loaded = CLIPTokenizerFast.from_pretrained(tmp_path)
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (0, 1, 1)
    ids = loaded("A Red   circle at the top").input_ids
    assert loaded.convert_ids_to_tokens(ids) == [
        "<|startoftext|>", "a</w>", "red</w>", "circle</w>", "at</w>", "the</w>", "top</w>",
        "<|endoftext|>"]
    assert tokenizer("a red circle").input_ids == loaded("a red circle").input_ids
    # every word of the course's captions is one token; unseen text still has no unknown token
    for text in texts[:50]:
        assert len(loaded(text).input_ids) == len(text.split()) + 2
    unseen = loaded("This is a photo of a teal hexagon.").input_ids
    assert unseen.count(loaded.eos_token_id) == 1 and unseen[-1] == loaded.eos_token_id
    batch = loaded(["a red circle", "a small red circle on the left"], padding=True)
    assert batch.input_ids[0][-1] == loaded.pad_token_id and batch.attention_mask[0][-1] == 0


def test_tokenizer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="texts"):
        clip.build_tokenizer([], tmp_path)
    with pytest.raises(ValueError, match="texts"):
        clip.build_tokenizer(["a red circle", 3], tmp_path)


def test_tokenizer_is_the_same_every_time(tmp_path):
    # the BPE trainer's own numbering changes from run to run; build_tokenizer's must not
    texts = [e["caption"] for e in clip.make_examples(300, seed=2)]
    first = clip.build_tokenizer(texts, tmp_path / "one").get_vocab()
    for k in range(4):
        assert clip.build_tokenizer(texts, tmp_path / f"again{k}").get_vocab() == first
    assert first["<|startoftext|>"] == 0 and first["<|endoftext|>"] == 1
    # the whole words come right after the 2 special tokens and the 2 x 256 byte symbols
    words = sorted({w for t in texts for w in t.split()} - set("abcdefghijklmnopqrstuvwxyz"))
    assert [first[w + "</w>"] for w in words] == list(range(514, 514 + len(words)))


def test_tokenizer_vocab_size_too_small(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        clip.build_tokenizer(["a large purple triangle at the bottom"], tmp_path, vocab_size=260)
