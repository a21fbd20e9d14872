"""Tests of utils.clip: the picture-caption generator, the losses, the tokenizer, the tests, the records."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, CLIPTokenizerFast

import utils
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

def test_saving_while_another_kernel_loads_never_shows_half_a_file(tmp_path):
    """The notebook and the `%%hub` tests build the tokenizer into one folder, possibly at once: a
    plain `save_pretrained` there lets a loader read a half-written tokenizer.json (hundreds of
    JSONDecodeErrors in 40 saves when this was written); whole files moved in give none."""
    import threading

    tokenizer = clip.build_tokenizer(["a red circle", "a blue square at the top"], tmp_path / "tiny-clip")
    errors, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            try:
                CLIPTokenizerFast.from_pretrained(tmp_path / "tiny-clip")
            except Exception as err:  # noqa: BLE001 - any failure to load counts
                errors.append(type(err).__name__)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        for _ in range(40):
            clip.save_whole_files(tokenizer, tmp_path / "tiny-clip")
    finally:
        stop.set()
        loader.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-clip"]  # no staging folder left behind
    saved = {p.name for p in (tmp_path / "tiny-clip").iterdir()}
    tokenizer.save_pretrained(tmp_path / "plain")
    assert saved == {p.name for p in (tmp_path / "plain").iterdir()}


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


# ---- two objects and their twins ---------------------------------------------------------------

def test_pair_scenes_and_twins():
    scene = clip.PairScene((("red", "circle"), ("blue", "square")))
    assert scene.twin() == clip.PairScene((("blue", "circle"), ("red", "square")))
    assert scene.twin().twin() == scene
    assert clip.caption(scene) == "a red circle and a blue square"
    assert clip.caption(scene, swap_order=True) == "a blue square and a red circle"
    assert clip.caption(scene.twin(), 1) == "a blue circle on the left and a red square on the right"
    assert clip.caption(clip.PairScene((("orange", "star"), ("red", "cross")))) == \
        "an orange star and a red cross"
    assert clip.caption_distribution(scene) == {
        "a red circle and a blue square": 0.25, "a blue square and a red circle": 0.25,
        "a red circle on the left and a blue square on the right": 0.5}
    with pytest.raises(ValueError, match="differ"):
        clip.PairScene((("red", "circle"), ("red", "square")))
    with pytest.raises(ValueError, match="colour"):
        clip.PairScene((("teal", "circle"), ("red", "square")))


def test_binding_split():
    assert len(clip.BINDING_CLASSES) == 90  # C(6,2) colour pairs x C(4,2) shape pairs off the diagonal
    assert not set(clip.BINDING_HELD_OUT) & set(clip.BINDING_TRAIN)
    assert len(clip.BINDING_HELD_OUT) + len(clip.BINDING_TRAIN) == 90
    for (c1, c2), (s1, s2) in clip.BINDING_CLASSES:
        assert all((c, s) in clip.TRAIN_COMBOS for c in (c1, c2) for s in (s1, s2))


def test_pair_examples_come_with_twins_and_stay_in_their_classes():
    examples = clip.make_pair_examples(100, seed=0)
    assert len(examples) == 200
    as_sets = lambda colours, shapes: (frozenset(colours), frozenset(shapes))
    seen = {as_sets(*zip(*e["scene"].objects)) for e in examples}
    assert seen <= {as_sets(*k) for k in clip.BINDING_TRAIN}
    for a, b in zip(examples[::2], examples[1::2]):
        assert b["scene"] == a["scene"].twin()
        assert a["twin_caption"] == b["caption"] and b["twin_caption"] == a["caption"]
        assert sorted(a["caption"].split()) == sorted(b["caption"].split())  # the same bag of words
        assert a["caption"] != b["caption"]
    # the colour of each object is drawn where the object is
    scene = clip.PairScene((("red", "circle"), ("blue", "square")))
    pixels = np.asarray(clip.draw_scene(scene, image_size=40)).astype(int)
    for (colour, _), (fx, fy) in zip(scene.objects, clip.PAIR_PLACES):
        assert np.abs(pixels[round(fy * 40), round(fx * 40)] - clip.COLOURS[colour]).max() <= 2
    held = clip.make_pair_examples(50, classes=clip.BINDING_HELD_OUT, seed=1, templates=[0])
    assert all(" and " in e["caption"] and "left" not in e["caption"] for e in held)
    with pytest.raises(ValueError, match="classes"):
        clip.make_pair_examples(3, classes=[])


# ---- the sigmoid loss --------------------------------------------------------------------------

def _tiny_siglip(seed=0):
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config=dict(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=16, patch_size=8),
    )
    model = SiglipModel(config).eval()
    with torch.no_grad():  # the paper's initial values: t' = log 10, b = -10
        model.logit_scale.fill_(math.log(10))
        model.logit_bias.fill_(-10.0)
    return model


def test_sigmoid_loss_equals_siglip_model_loss():
    model, batch = _tiny_siglip(), _batch()
    with torch.no_grad():
        out = model(**batch, return_loss=True)
        ours = clip.sigmoid_loss(out.image_embeds, out.text_embeds, model.logit_scale, model.logit_bias)
        via_fn = clip.siglip_loss_fn(model, batch)
        with_bias_zero = clip.sigmoid_loss(out.image_embeds, out.text_embeds, model.logit_scale,
                                           torch.tensor(0.0))
    assert torch.allclose(ours, out.loss, atol=1e-5)
    assert torch.allclose(via_fn, out.loss, atol=1e-5)
    assert out.loss.item() > 1.0 and abs(with_bias_zero - out.loss).item() > 1.0  # the bias matters


def test_sigmoid_loss_gradients_equal_siglip_model_gradients():
    model, batch = _tiny_siglip(1), _batch(seed=1)
    model.zero_grad()
    model(**batch, return_loss=True).loss.backward()
    theirs = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert "logit_bias" in theirs
    model.zero_grad()
    clip.siglip_loss_fn(model, batch).backward()
    for name, grad in theirs.items():
        assert torch.allclose(model.get_parameter(name).grad, grad, atol=1e-5), name


def test_sigmoid_loss_by_hand():
    # two pairs at right angles, scale 1, bias 0: logits are the identity matrix
    image = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    softplus = lambda z: math.log1p(math.exp(z))  # -log sigmoid(-z)
    expected = (2 * softplus(-1.0) + 2 * softplus(0.0)) / 2
    assert clip.sigmoid_loss(image, text, torch.tensor(0.0), torch.tensor(0.0)).item() == \
        pytest.approx(expected)
    with pytest.raises(ValueError, match="logit_bias"):
        clip.sigmoid_loss(image, text, torch.tensor(0.0), torch.ones(2))
    with pytest.raises(ValueError, match="same shape"):
        clip.sigmoid_loss(image, text[:1], torch.tensor(0.0), torch.tensor(0.0))


# ---- the floor, the baseline, the binding test -------------------------------------------------

def test_loss_floor_by_hand():
    # single objects of two combos, one phrasing ("a red circle"), one size, one place: every
    # caption fits exactly the pictures of its combo. In a batch holding the two combos k and
    # (n - k) times, the posterior of the partner is uniform over its duplicates in both directions.
    a = {"scene": clip.Scene("red", "square", "small", "left"), "caption": "a red square"}
    b = {"scene": clip.Scene("blue", "circle", "small", "left"), "caption": "a blue circle"}
    scenes = {a["scene"]: 0.5, b["scene"]: 0.5}
    examples = [a, a, a, b]

    def only_plain(scene):
        return {clip.caption(scene, 0): 1.0}

    original = clip.caption_distribution
    clip.caption_distribution = only_plain
    try:
        floor = clip.loss_floor(examples, [[0, 1, 2, 3]], scenes)
        assert floor == pytest.approx(3 / 4 * math.log(3))
        assert clip.loss_floor(examples, [[0, 3]], scenes) == pytest.approx(0.0)
    finally:
        clip.caption_distribution = original


def test_loss_floor_orders():
    examples = clip.make_examples(256, seed=0) + clip.make_pair_examples(128, seed=0)
    scenes = clip.scene_distribution(0.5)
    assert sum(scenes.values()) == pytest.approx(1.0)
    random_batches = clip.make_batches(len(examples), 64, 8, seed=0)
    hard_batches = clip.make_batches(len(examples), 64, 8, seed=0, hard_negatives=True)
    assert all(set(b[::2]) == {i - 1 for i in b[1::2]} for b in hard_batches)
    full = clip.loss_floor(examples, random_batches, scenes)
    blind = clip.loss_floor(examples, random_batches, scenes, blind_to=("size", "position"))
    words = clip.loss_floor(examples, hard_batches, scenes, bag_of_words=True)
    # knowing less can only raise the floor; with twins in the batch, a bag of words pays for it
    assert 0 < full < blind
    assert words > clip.loss_floor(examples, hard_batches, scenes) + 0.2
    with pytest.raises(ValueError, match="blind_to"):
        clip.loss_floor(examples, random_batches, scenes, blind_to=("colour",))
    with pytest.raises(ValueError, match="single_share"):
        clip.scene_distribution(1.5)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return clip.course_data(tmp_path_factory.mktemp("tiny-clip"))


def test_order_blind_text_ignores_word_order_and_clip_does_not(course):
    _, processor = course
    texts = ["a red circle and a blue square", "a blue circle and a red square", "a red star"]
    batch = processor.tokenizer(texts, padding="max_length", max_length=clip.MAX_TEXT_LENGTH,
                                return_tensors="pt")
    vectors = {}
    for kind in ("clip", "order-blind clip"):
        model = clip.small_model(kind, processor.tokenizer).eval()
        with torch.no_grad():
            vectors[kind] = model.get_text_features(**batch).pooler_output
    blind, clip_vectors = vectors["order-blind clip"], vectors["clip"]
    assert torch.allclose(blind[0], blind[1], atol=1e-5)  # a caption and its twin: one vector
    assert (blind[0] - blind[2]).abs().max() > 0.1  # other words: another vector
    assert (clip_vectors[0] - clip_vectors[1]).abs().max() > 1e-3
    model = clip.small_model("order-blind clip", processor.tokenizer)
    assert not any("position" in n for n, _ in model.text_model.named_parameters())
    siglip = clip.small_model("siglip", processor.tokenizer, logit_bias=-math.log(64))
    assert siglip.logit_bias.item() == pytest.approx(-math.log(64))
    with pytest.raises(ValueError, match="kind"):
        clip.small_model("bag of words", processor.tokenizer)


def test_one_attribute_rules_pass_six_captions_and_fail_the_others(course):
    _, processor = course
    tests = clip.ZeroShotTests(processor, "validation", n=60)
    assert len(tests.labels) == 36 and set(tests.held_out_labels) <= set(tests.labels)
    for sees in ("colour", "shape"):
        rule = tests.rule(sees)
        assert rule["naming, 6 captions"] == pytest.approx(1.0)  # one word names the pair
        assert rule["naming, 36 captions"] == pytest.approx(1 / 6)
        assert (rule["binding"], rule["size"], rule["place"]) == pytest.approx((0.5, 0.5, 0.2))
    assert tests.rule("nothing")["naming, 36 captions"] == pytest.approx(1 / 36)
    # the colour read off the pixels, with no learning at all
    pixels = tests.colour_from_pixels()
    assert pixels["naming, 6 captions"] >= 0.95 and pixels["naming, 36 captions"] <= 1 / 6 + 1e-9
    with pytest.raises(ValueError, match="sees"):
        tests.rule("size")


def test_outcomes_score_every_item_and_an_order_blind_model_ties_on_binding(course):
    _, processor = course
    tests = clip.ZeroShotTests(processor, "test", n=20)
    outcomes = tests.outcomes(clip.small_model("order-blind clip", processor.tokenizer))
    assert list(outcomes) == list(clip.TESTS)
    assert all(len(v) == 20 for v in outcomes.values())
    assert outcomes["binding"] == [0.5] * 20
    assert all(v in (0.0, 1.0) for name in clip.TESTS if name != "binding" for v in outcomes[name])


def test_shipped_runs_cover_every_model_over_three_seeds():
    record = json.loads(utils.data_path("clip_runs.json").read_text())
    assert set(record["runs"]) == {"CLIP", "CLIP, twins in a batch", "order-blind CLIP", "SigLIP, b = -10",
                                   "SigLIP, b = -log N", "CLIP, sigmoid loss, b = -10"}
    for name, seeds in record["runs"].items():
        assert len(seeds) >= 3, name
        for label, run in clip.draws(record, name).items():  # earlier draws of a seed too
            seed = label.split(",")[0].split()[1]
            assert f"--seeds {seed}" in run["command"] and f"'{name}'" in run["command"]
            steps = [row["step"] for row in run["validation"]]
            assert run["chosen_step"] in steps and steps[-1] == record["steps"]
            assert list(run["test"]) == record["tests"]
            assert all(len(v) == 300 and set(v) <= {0, 0.5, 1} for v in run["test"].values())
    assert all(run["test"]["binding"] == [0.5] * 300 for run in clip.draws(record, "order-blind CLIP").values())
    # an earlier draw is the same command with other outcomes (a repeat is not kept), and says where it was made
    for name, seeds in record[clip.EARLIER].items():
        for seed, earlier in seeds.items():
            for run in earlier:
                assert run["command"] == record["runs"][name][seed]["command"]
                assert run["test"] != record["runs"][name][seed]["test"] and run["recorded_in"], (name, seed)
    # validation chose each checkpoint: the chosen step has the best naming + binding there
    for name in record["runs"]:
        for run in clip.draws(record, name).values():
            best = max(r["naming"] + r["binding"] for r in run["validation"])
            chosen = next(r for r in run["validation"] if r["step"] == run["chosen_step"])
            assert chosen["naming"] + chosen["binding"] == pytest.approx(best, abs=2e-4)  # rounded to 4 places
    table = clip.seed_table(record)
    assert "over 3 seeds" in table.loc["CLIP", "binding"]
    assert f"over {len(clip.draws(record, 'CLIP'))} runs" in clip.seed_table(record, all_draws=True).loc["CLIP", "binding"]
    comparison = clip.compare_runs(record, "CLIP, twins in a batch", "CLIP", "binding")
    assert sorted(comparison) == [0, 1, 2] and "McNemar" in comparison[0].method


def test_binding_test_counts_wins_and_ties():
    pairs = clip.make_pair_examples(5, seed=0)
    always_right = lambda images, texts: torch.tensor([1.0 if t == e["caption"] else 0.0
                                                       for t, e in zip(texts, pairs)])
    result = clip.binding_test(always_right, pairs)
    assert result["accuracy"] == 1.0 and result["wins"] == 10 and result["ties"] == 0
    # Wilson's interval of 10 of 10 (closed form, z = 1.96): 1 / (1 + z^2 / 10) .. 1
    z = 1.959963984540054
    assert result["low"] == pytest.approx(1 / (1 + z * z / 10)) and result["high"] == pytest.approx(1.0)
    assert not hasattr(clip, "wilson")  # the one Wilson interval is utils.evaluation.wilson
    # a tie counts half: 3 wins and 3 ties of 10 score 4.5 right, the interval that of round(4.5) = 4
    three_ties = lambda images, texts: torch.tensor(
        [1.0 if k < 3 and t == e["caption"] else 0.5 if 3 <= k < 6 else 0.0 if k < 6 else
         (1.0 if t != e["caption"] else 0.0) for k, (t, e) in enumerate(zip(texts, pairs))])
    mixed = clip.binding_test(three_ties, pairs)
    assert (mixed["wins"], mixed["ties"], mixed["accuracy"]) == (3, 3, 0.45)
    assert (mixed["low"], mixed["high"]) == pytest.approx((0.1682, 0.6873), abs=1e-4)
    with pytest.raises(ValueError, match="two-object"):
        clip.binding_test(always_right, clip.make_examples(3))


def test_shape_areas_follow_the_outlines():
    assert clip.SHAPE_AREAS["circle"] == pytest.approx(math.pi)
    assert clip.SHAPE_AREAS["square"] == pytest.approx(2.0)
    assert clip.SHAPE_AREAS["diamond"] == pytest.approx(2 * 1.15 * 0.8)
    assert clip.SHAPE_AREAS["cross"] == pytest.approx(20 / 9)
    assert sorted(clip.SHAPE_AREAS, key=clip.SHAPE_AREAS.get) == ["star", "triangle", "diamond", "square",
                                                                   "cross", "circle"]


def test_colour_area_rule_reads_pixel_counts_not_positions():
    scene = clip.PairScene((("red", "circle"), ("blue", "star")))
    image = clip.draw_scene(scene)
    red, blue = clip.colour_pixels(image, ["red", "blue"])
    assert red > blue > 0  # the circle covers more of the canvas than the star
    # the rule gives the colour with more pixels to the larger shape, whichever order the caption names them
    texts = ["a red circle and a blue star", "a blue circle and a red star",
             "a blue star and a red circle", "a red circle on the left and a blue star on the right"]
    assert clip.colour_area_scores([image] * 4, texts).tolist() == [1.0, -1.0, 1.0, 1.0]
    # the same shapes with the places swapped: the same answer, since the rule never looks at positions
    swapped = clip.draw_scene(clip.PairScene((("blue", "star"), ("red", "circle"))))
    assert clip.colour_area_scores([swapped], texts[:1]).tolist() == [1.0]
    # a scene and its twin, each scored on its own: a circle far larger than a star wins both
    pair = clip.make_pair_examples(1, classes=[(("red", "blue"), ("circle", "star"))], seed=0)
    result = clip.binding_test(clip.colour_area_scores, pair)
    assert result["accuracy"] == 1.0 and result["scores"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="two coloured shapes"):
        clip.colour_area_scores([image], ["a red circle"])


def test_groups_of_the_test_items_and_grouped_comparisons(course):
    _, processor = course
    tests = clip.ZeroShotTests(processor, "validation", n=60)
    binding = tests.groups("binding")
    assert len(binding) == 60 and len(set(binding)) <= len(clip.BINDING_HELD_OUT)
    for e, group in zip(tests.binding, binding):
        (c1, s1), (c2, s2) = e["scene"].objects
        assert e["binding_class"] in clip.BINDING_HELD_OUT
        assert group.split() == ["/".join(sorted({c1, c2}, key=list(clip.COLOURS).index)),
                                 "/".join(sorted({s1, s2}, key=clip.SHAPES.index))]
    naming = tests.groups("naming, 36 captions")
    assert naming == [e["caption"] for e in tests.naming] and set(naming) == set(clip.zero_shot_captions())
    with pytest.raises(ValueError, match="test"):
        tests.groups("colour")
    rule = tests.colour_area()
    # over a few classes there is no bootstrap interval, only the sign-flip test against 50% over the classes
    assert 0.3 < rule["accuracy"] < 0.7 and "interval" not in rule and 0 < rule["p_value"] <= 1
    assert rule["p_value"] == clip.against_chance(rule["scores"], binding).p_value
    assert f"{len(set(binding))} classes" in rule["summary"]
    # four classes, every scene right: the sign flip gives the smallest p four classes allow, 2 / 2**4
    assert clip.against_chance([1.0] * 8, list("aabbccdd")).p_value == pytest.approx(2 / 16)
    assert clip.against_chance([1.0, 0.0, 0.5, 0.5], list("aabb")).p_value == 1.0
    record = json.loads(utils.data_path("clip_runs.json").read_text())
    full = clip.ZeroShotTests(processor, "test")
    grouped = clip.compare_runs(record, "CLIP", "order-blind CLIP", "naming, 36 captions",
                                groups=full.groups("naming, 36 captions"))
    assert "6 groups" in grouped[0].method


@pytest.mark.parametrize("split", ["validation", "test"])
def test_pixel_counts_cannot_pass_the_binding_test(course, split):
    """The two shapes of a binding scene cover the same area, so the colour-area rule, which gives
    the colour with more pixels to the larger shape, scores at chance; and a caption and its twin's
    name the same colours and shapes, so a rule that sees one attribute is at 1/2 by construction."""
    _, processor = course
    tests = clip.ZeroShotTests(processor, split)
    assert abs(tests.colour_area()["accuracy"] - 0.5) < 0.07
    assert tests.rule("colour")["binding"] == tests.rule("shape")["binding"] == 0.5
    areas = {shape: clip.SHAPE_AREAS[shape] * clip.pair_radius(shape) ** 2 for shape in clip.SHAPES}
    assert max(areas.values()) == pytest.approx(min(areas.values()), rel=1e-9)


def test_every_shipped_command_parses_with_todays_script_and_repeats_its_run():
    """Each record's command, read by scripts/train_clip_longer.py's own parser, names that run, that
    seed and the record's settings, so that running it again repeats the run (a removed or renamed
    option would fail here)."""
    import importlib.util
    import shlex

    path = utils.REPO_ROOT / "scripts" / "train_clip_longer.py"
    spec = importlib.util.spec_from_file_location("train_clip_longer", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for path in sorted(utils.data_path("clip_runs.json").parent.glob("clip_runs*.json")):
        record = json.loads(path.read_text())
        for name in record["runs"]:
            for label, run in clip.draws(record, name).items():
                seed = label.split(",")[0].split()[1]
                words = shlex.split(run["command"])
                assert words[:2] == ["python", "scripts/train_clip_longer.py"]
                args = script.build_parser().parse_args(words[2:])
                assert args.runs == [name] and args.seeds == [int(seed)]
                assert (args.steps, args.lr, args.eval_every) == (record["steps"], record["lr"], record["eval_every"])
                assert args.shift == record.get("shift", 0), path.name
        assert record["batch_size"] == script.BATCH_SIZE
    with pytest.raises(SystemExit):
        script.build_parser().parse_args(["--runs", "SigLIP, b = 0"])


def test_held_out_splits_are_disjoint_diagonals():
    """Every shift holds out one pair per colour and per shape, the six shifts share no pair, shift 0 is
    the notebook's split, and each shift's binding classes use trained combinations only."""
    splits = [clip.held_out_split(k) for k in clip.HELD_OUT_SHIFTS]
    assert splits[0].pairs == clip.HELD_OUT and splits[0].binding == clip.BINDING_HELD_OUT
    assert len({p for s in splits for p in s.pairs}) == 36
    for split in splits:
        assert sorted(c for c, _ in split.pairs) == sorted(clip.COLOURS)
        assert sorted(s for _, s in split.pairs) == sorted(clip.SHAPES)
        assert len(split.binding) == 18 and not set(split.binding) & set(split.binding_train)
        for (c1, c2), (s1, s2) in split.binding:
            assert all((c, s) in split.train_combos for c in (c1, c2) for s in (s1, s2))
    with pytest.raises(ValueError, match="shift"):
        clip.held_out_split(6)


def test_shipped_shift_records_hold_out_other_pairs():
    """The runs with other compositions held out name their split, and their test items are that split's."""
    paths = sorted(utils.data_path("clip_runs.json").parent.glob("clip_runs_shift*.json"))
    assert paths
    for path in paths:
        record = json.loads(path.read_text())
        split = clip.held_out_split(record["shift"])
        assert record["held_out"]["pairs"] == [list(p) for p in split.pairs]
        assert not set(split.pairs) & set(clip.HELD_OUT)
        for name, seeds in record["runs"].items():
            for run in seeds.values():
                assert list(run["test"]) == record["tests"]
                assert all(len(v) == 300 and set(v) <= {0, 0.5, 1} for v in run["test"].values())
                if name == "order-blind CLIP":
                    assert run["test"]["binding"] == [0.5] * 300


def test_sigmoid_clip_is_clip_with_siglip_start_and_a_learned_bias(course):
    _, processor = course
    plain, sigmoid = (clip.small_model(kind, processor.tokenizer, seed=1) for kind in ("clip", "sigmoid clip"))
    assert type(sigmoid) is type(plain)
    assert sigmoid.logit_scale.exp().item() == pytest.approx(10.0)
    assert sigmoid.logit_bias.item() == pytest.approx(-10.0) and sigmoid.logit_bias.requires_grad
    assert any(p is sigmoid.logit_bias for p in sigmoid.parameters())  # the optimiser trains it
    same = {n: p for n, p in plain.named_parameters()}
    assert all(torch.equal(p, same[n]) for n, p in sigmoid.named_parameters() if n not in ("logit_scale", "logit_bias"))


def test_pooled_comparison_averages_the_seeds_and_resamples_shared_groups():
    record = {"runs": {"a": {"0": {"test": {"t": [1, 1, 0, 1]}}, "1": {"test": {"t": [1, 0, 1, 1]}}},
                       "b": {"0": {"test": {"t": [0, 1, 0, 0]}}, "1": {"test": {"t": [0, 0, 1, 0]}}}}}
    pooled = clip.pooled_comparison(record, "a", "b", "t", groups=["x", "x", "y", "z"])
    assert pooled.difference == pytest.approx((3 / 4 - 1 / 4 + 3 / 4 - 1 / 4) / 2)
    assert "3 groups" in pooled.method
    with pytest.raises(ValueError, match="groups"):
        clip.pooled_comparison(record, "a", "b", "t", groups=["x", "y"])


def test_best_bias_matches_the_formula_for_equal_cosines():
    for n, scale, c in ((4, 0.0, 0.0), (64, 10.0, 0.3), (64, 13.6, -0.2)):
        cosines = torch.full((2, n, n), c, dtype=torch.float64)
        assert clip.best_bias(cosines, scale) == pytest.approx(-math.log(n - 1) - scale * c, abs=1e-4)


def test_best_bias_falls_when_negatives_are_as_close_as_positives():
    n, scale = 8, 10.0
    apart = torch.eye(n, dtype=torch.float64)  # right pairs at cosine 1, the others at 0
    duplicates = apart.clone()
    duplicates[0, 1] = duplicates[1, 0] = 1.0  # two pictures that fit each other's caption
    assert clip.best_bias(duplicates, scale) < clip.best_bias(apart, scale)


def test_best_bias_rejects_bad_input():
    with pytest.raises(ValueError, match="N x N"):
        clip.best_bias(torch.zeros(3, 4), 1.0)
    with pytest.raises(ValueError, match="scale"):
        clip.best_bias(torch.zeros(4, 4), -1.0)
    with pytest.raises(ValueError, match="logit_bias"):
        clip.bias_check(torch.nn.Linear(2, 2), [], [])


def test_seed_comparison_is_a_paired_t_over_the_seeds():
    from scipy import stats

    runs = {"a": [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], "b": [[0, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]]}
    record = {"runs": {name: {str(s): {"test": {"t": v}} for s, v in enumerate(seeds)} for name, seeds in runs.items()}}
    result = clip.seed_comparison(record, "a", "b", "t")
    a, b = [0.75, 0.5, 1.0], [0.25, 0.25, 0.5]
    assert result.difference == pytest.approx(np.mean(np.subtract(a, b)))
    assert result.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert "3 seeds" in result.method


def test_pixel_rules_read_size_and_place_off_every_drawing():
    for colour, shape in clip.HELD_OUT:
        for size in clip.SIZES:
            for place in clip.POSITIONS:
                image = clip.draw_scene(clip.Scene(colour, shape, size, place))
                assert clip.size_from_pixels(image, shape) == size, (colour, shape, size, place)
                assert clip.place_from_pixels(image) == place, (colour, shape, size, place)
    jittered = clip.make_examples(60, combos=clip.HELD_OUT, seed=5, templates=[0])
    assert sum(clip.size_from_pixels(e["image"], e["shape"]) == e["size"] for e in jittered) >= 57
    assert sum(clip.place_from_pixels(e["image"]) == e["position"] for e in jittered) >= 57


def test_pixel_rules_reject_bad_input():
    image = clip.draw_scene(clip.Scene("red", "circle", "small", "left"))
    with pytest.raises(ValueError, match="unknown shape"):
        clip.size_from_pixels(image, "hexagon")
    with pytest.raises(ValueError, match="no saturated pixels"):
        clip.place_from_pixels(Image.new("RGB", (32, 32), (128, 128, 128)))


def test_early_choices_lists_runs_stopped_before_the_last_step():
    rows = lambda scores: [{"step": 250 * (k + 1), "naming": n, "binding": 0.5} for k, n in enumerate(scores)]
    record = {"runs": {"a": {"0": {"chosen_step": 500, "validation": rows([0.2, 0.4])},
                             "1": {"chosen_step": 250, "validation": rows([0.5, 0.4])}}}}
    assert clip.early_choices(record) == {"a, seed 1": (250, pytest.approx(0.1))}
    assert clip.accuracies({"runs": {"a": {"1": {"test": {"t": [1, 1]}}, "0": {"test": {"t": [1, 0]}}}}}, "a", "t") == [0.5, 1.0]


def test_draws_keep_earlier_runs_beside_each_seed():
    run = lambda t: {"test": {"t": t}}  # noqa: E731
    record = {"tests": ["t"], "runs": {"a": {"1": run([1, 1]), "0": run([1, 0])}},
              clip.EARLIER: {"a": {"0": [{"recorded_in": "abc", "made_in": "abd", **run([0, 0])}]}}}
    assert list(clip.draws(record, "a")) == ["seed 0", "seed 0, earlier draw", "seed 1"]
    assert list(clip.draws(record, "a", all_draws=False)) == ["seed 0", "seed 1"]
    assert clip.accuracies(record, "a", "t") == [0.5, 1.0]
    assert clip.accuracies(record, "a", "t", all_draws=True) == [0.5, 0.0, 1.0]
    table = clip.rerun_table(record, tests=("t",))
    assert table.loc["a", "t, seed 0"] == "0.0 → 50.0" and table.loc["a", "earlier draws made in"] == "abd"
    assert "over 3 runs" in clip.seed_table(record, all_draws=True).loc["a", "t"]
    assert "over 2 seeds" in clip.seed_table(record).loc["a", "t"]
    assert clip.draws({"runs": record["runs"]}, "a") == clip.draws(record, "a", all_draws=False)


def test_comparison_lines_count_the_runs_that_leave_chance():
    groups = list("aabbccddeeff")  # six classes: a sign flip can reach 1/32
    run = lambda v: {"test": {"binding": v}}  # noqa: E731
    record = {"runs": {"a": {"0": run([1.0] * 12), "1": run([1.0] * 12)}, "b": {"0": run([0.5] * 12), "1": run([0.5] * 11 + [1.0])}},
              clip.EARLIER: {"a": {"1": [{"recorded_in": "abc", **run([1.0] * 11 + [0.5])}]}}}
    assert [c.p_value < 0.05 for _, c in clip.binding_draws(record, "a", groups).values()] == [True, True, True]
    lines = clip.comparison_lines(record, [("a", "b", "binding")], lambda test: groups, same_start={("a", "b")})
    assert lines[0] == "a minus b, binding:" and len(lines) == 8
    assert "Welch t over every recorded run (3 and 2, unpaired): +46.5 points" in lines[2]  # (2 + 11.5/12) / 3 - (6 + 6.5) / 24
    assert "Welch t over the seeds, each the mean of its draws (2 and 2, unpaired): +46.9 points" in lines[3]  # (1 + (1 + 11.5/12) / 2) / 2 - (6 + 6.5) / 24
    assert "paired t over the seeds (latest draws): +47.9 points" in lines[4]
    assert lines[6] == "  runs that leave chance (p < 0.05): 3 of 3 against 0 of 2; Fisher's exact test p = 0.10"
    assert lines[7] == "  seeds that leave chance in every draw: 2 of 2 against 0 of 2; Fisher's exact test p = 0.33"
    assert clip.seed_means(record, "a", "binding") == [1.0, pytest.approx((1 + 11.5 / 12) / 2)]
    assert clip.seeds_leaving_chance(record, "b", groups) == (0, 2)
    assert not any("paired t" in line for line in clip.comparison_lines(record, [("a", "b", "binding")], lambda t: groups))
    # a p that two decimals would round onto 0.05 shows its side of the line; the rest print as format_p
    near = {"runs": {"a": {str(i): run([v] * 12) for i, v in enumerate((0.402, 0.407, 0.41))},
                     "b": {str(i): run([v] * 12) for i, v in enumerate((0.44, 0.45, 0.48))}}}
    welch = clip.comparison_lines(near, [("a", "b", "binding")], lambda t: groups)[3]
    assert welch.endswith("p = 0.048"), welch  # 0.0478; format_p alone prints "p = 0.05"


def test_the_script_keeps_a_replaced_run_as_an_earlier_draw():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_clip_longer", utils.REPO_ROOT / "scripts" / "train_clip_longer.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    record = {"runs": {"m": {"0": {"command": "c", "test": {"t": [1]}}}}}
    script.keep_earlier(record, "m", "0", {"test": {"t": [1]}}, "abc")  # a repeat: nothing kept
    script.keep_earlier(record, "m", "1", {"test": {"t": [0]}}, "abc")  # a new seed: nothing replaced
    assert clip.EARLIER not in record
    script.keep_earlier(record, "m", "0", {"test": {"t": [0]}}, "abc")
    assert record[clip.EARLIER] == {"m": {"0": [{"recorded_in": "abc", "command": "c", "test": {"t": [1]}}]}}
    assert set(script.machine()) == {"torch", "cpu"}


def test_split_comparison_counts_each_split_once():
    from scipy import stats

    def record(a, b):  # per seed, one test of four items
        return {"runs": {"a": {str(s): {"test": {"t": v}} for s, v in enumerate(a)},
                         "b": {str(s): {"test": {"t": v}} for s, v in enumerate(b)}}}

    records = {0: record([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], [[0, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]]),
               2: record([[1, 0, 0, 0]], [[0, 0, 0, 0]]), 4: record([[1, 1, 1, 1]], [[1, 1, 0, 0]])}
    result = clip.split_comparison(records, "a", "b", "t")
    a, b = [0.75, 0.25, 1.0], [1 / 3, 0.0, 0.5]  # split 0: the mean of its three seeds
    assert result.difference == pytest.approx(np.mean(np.subtract(a, b)))
    assert result.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert "3 seeds" in result.method  # paired_t names its pairs "seeds": here one per split
    with pytest.raises(ValueError, match="2 splits"):
        clip.split_comparison({0: records[0]}, "a", "b", "t")


def test_validation_set_is_the_notebook_and_the_script_setup(course):
    train_examples, processor = course
    val = clip.validation_set(processor, 8, n_batches=3)
    assert len(val.examples) == len(val.items) == 512 + 2 * 256
    assert [e["caption"] for e in val.examples[:5]] == [e["caption"] for e in clip.make_examples(5, seed=3)]
    assert not {(e["colour"], e["shape"]) for e in val.examples[:512]} & set(clip.HELD_OUT)
    assert [len(b) for b in val.batches["random"]] == [8] * 3
    assert all(b[k] // 2 == b[k + 1] // 2 for b in val.batches["twins"] for k in range(0, 8, 2))
    assert val.scenes == clip.scene_distribution(0.5)
    shifted = clip.validation_set(processor, 8, shift=2, n_batches=1)
    assert not {(e["colour"], e["shape"]) for e in shifted.examples[:512]} & set(clip.held_out_split(2).pairs)


def test_chosen_captions_and_what_they_were(course):
    _, processor = course
    tests = clip.ZeroShotTests(processor, "test", n=20)
    assert len(tests.seen) == 20 and all((e["colour"], e["shape"]) in clip.TRAIN_COMBOS for e in tests.seen)
    chosen = tests.chosen_captions(clip.small_model("clip", processor.tokenizer))
    assert [len(v) for v in chosen.values()] == [20, 20] and all(0 <= k < 36 for v in chosen.values() for k in v)
    # a rule that names every picture by its colour's held-out caption
    held_out_of = {c: clip.ALL_COMBOS.index((c, s)) for c, s in clip.HELD_OUT}
    rule = {"held-out pairs": [held_out_of[e["colour"]] for e in tests.naming],
            "trained pairs": [held_out_of[e["colour"]] for e in tests.seen]}
    shares = tests.choice_shares(rule)
    assert shares["held-out: right"] == 1.0 and shares["trained: a held-out caption"] == 1.0
    assert shares["trained: right"] == 0.0
    # among same-colour mistakes the novelty rule always takes the held-out caption; no preference is 1 in 5
    assert shares[tests.CONDITIONED] == 1.0 and tests.NO_PREFERENCE == pytest.approx(1 / 5)
    other_trained = [clip.ALL_COMBOS.index((e["colour"], next(s for s in clip.SHAPES if s != e["shape"]
                                                               and (e["colour"], s) in clip.TRAIN_COMBOS)))
                     for e in tests.seen]
    assert tests.choice_shares({**rule, "trained pairs": other_trained})[tests.CONDITIONED] == 0.0
    # a mix: half the pictures take the held-out caption, half another trained shape of their colour
    mixed = [h if i % 2 else o for i, (h, o) in enumerate(zip(rule["trained pairs"], other_trained))]
    assert tests.choice_shares({**rule, "trained pairs": mixed})[tests.CONDITIONED] == 0.5
    # right answers and mistakes of another colour are not same-colour mistakes
    own_seen = [clip.ALL_COMBOS.index((e["colour"], e["shape"])) for e in tests.seen]
    assert math.isnan(tests.choice_shares({**rule, "trained pairs": own_seen})[tests.CONDITIONED])
    held = ("held-out: right", "held-out: colour only", "held-out: shape only", "held-out: neither")
    assert sum(tests.choice_shares(chosen)[k] for k in held) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one caption"):
        tests.choice_shares({"held-out pairs": [0], "trained pairs": [0]})
    # what each chosen caption kept of its picture
    own = [clip.ALL_COMBOS.index((e["colour"], e["shape"])) for e in tests.naming]
    assert tests.choice_kinds(own) == ["right"] * 20
    colours = list(clip.COLOURS)
    other_colour = [clip.ALL_COMBOS.index((colours[(colours.index(e["colour"]) + 1) % 6], e["shape"]))
                    for e in tests.naming]
    assert tests.choice_kinds(other_colour) == ["shape only"] * 20
    assert tests.choice_kinds(rule["held-out pairs"]) == ["right"] * 20
    with pytest.raises(ValueError, match="one caption"):
        tests.choice_kinds([0])


def test_recorded_choices_are_the_recorded_naming(course):
    _, processor = course
    tests = clip.ZeroShotTests(processor, "test")
    record = json.loads(utils.data_path("clip_runs.json").read_text())
    with_choices = [(name, seed) for name, runs in record["runs"].items() for seed, run in runs.items() if "chosen" in run]
    assert {name for name, _ in with_choices} == set(record["runs"])
    for name, seed in with_choices:
        run = record["runs"][name][seed]
        assert [len(v) for v in run["chosen"].values()] == [300, 300]
        # naming among 36 is right exactly where the chosen caption is the picture's own
        right = [float(k == t) for k, t in zip(run["chosen"]["held-out pairs"], tests.truth.tolist())]
        assert right == run["test"]["naming, 36 captions"], (name, seed)
        # the last checkpoint is kept beside an earlier chosen one, never beside itself
        assert ("test_last" in run) == ("chosen_last" in run), (name, seed)
        if "test_last" in run:
            assert run["chosen_step"] != run["validation"][-1]["step"], (name, seed)
            right = [float(k == t) for k, t in zip(run["chosen_last"]["held-out pairs"], tests.truth.tolist())]
            assert right == run["test_last"]["naming, 36 captions"] and list(run["test_last"]) == record["tests"]
    assert set(clip.last_checkpoint_table(record).index) == set(clip.early_choices(record))
