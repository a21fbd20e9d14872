"""Tests of utils.sparse_attention: patterns against explicit masks, kernels against the float64 reference,
and the patterns against the positions that transformers' Longformer and BigBird really attend."""
import argparse
import functools
import importlib.util
import inspect
from pathlib import Path

import pytest
import torch

from utils import sparse_attention as sa

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def grid(n):
    return torch.arange(n)[:, None], torch.arange(n)[None, :]


def dense(pattern, n, heads=1):
    return sa.dense_mask(pattern, n, heads=heads)


def drop_late_queries(b, h, q_idx, kv_idx):
    """Queries from position 100 on see nothing: fully masked rows."""
    return q_idx < 100


# ------------------------------------------------------------------------------------------------ patterns
def test_atomic_patterns_match_their_definitions():
    n = 37
    i, j = grid(n)
    assert torch.equal(dense(sa.band(3), n)[0], (i - j).abs() <= 3)
    assert torch.equal(dense(sa.dilated(8, 3), n)[0], ((i - j).abs() <= 8) & ((i - j) % 3 == 0))
    assert torch.equal(dense(sa.global_tokens(0, 5), n)[0], (i == 0) | (j == 0) | (i == 5) | (j == 5))
    assert torch.equal(dense(sa.block_local(8), n)[0], i // 8 == j // 8)
    assert dense(sa.full(), n).all()


def test_random_keys_draws_k_distinct_keys_per_query_and_head():
    pattern = sa.random_keys(50, 4, seed=3, heads=2, exclude=sa.band(1))
    mask = dense(pattern, 50, heads=2)
    assert mask.shape == (2, 50, 50)
    assert (mask.sum(-1) == 4).all()
    assert not (mask & dense(sa.band(1), 50)).any()  # never inside the excluded pattern
    assert not torch.equal(mask[0], mask[1])  # heads draw separately
    assert torch.equal(mask, dense(sa.random_keys(50, 4, seed=3, heads=2, exclude=sa.band(1)), 50, heads=2))
    assert not torch.equal(mask, dense(sa.random_keys(50, 4, seed=4, heads=2, exclude=sa.band(1)), 50, heads=2))


def test_compounds_are_and_or_compositions():
    n = 40
    band, glob = dense(sa.band(2), n), dense(sa.global_tokens(0, 20), n)
    assert torch.equal(dense(sa.longformer(2, [0, 20]), n), band | glob)
    assert torch.equal(dense(sa.and_masks(sa.band(2), sa.global_tokens(0, 20)), n), band & glob)
    assert torch.equal(dense(sa.star_transformer(0), n), dense(sa.band(1), n) | dense(sa.global_tokens(0), n))


def test_bigbird_blocks_window_global_random_and_fallback():
    n, bs, r = 96, 8, 2  # 12 blocks
    mask = dense(sa.bigbird(n, bs, r, heads=3, seed=1), n, heads=3)
    blocks = sa.tiles(mask, bs)
    qb, kb = grid(12)
    window_and_global = ((qb - kb).abs() <= 1) | (qb == 0) | (kb == 0) | (qb == 11) | (kb == 11)
    assert (blocks & window_and_global).sum() == 3 * window_and_global.sum()
    random = blocks & ~window_and_global
    assert (random[:, 1:-1].sum(-1) == r).all()  # r random blocks in every non-global row
    assert torch.equal(mask, blocks.repeat_interleave(bs, -1).repeat_interleave(bs, -2))  # whole blocks
    assert sa.bigbird_uses_full_attention((5 + 2 * r) * bs, bs, r)
    assert dense(sa.bigbird((5 + 2 * r) * bs, bs, r), (5 + 2 * r) * bs).all()


def test_densities_follow_the_formulas():
    n, w = 256, 5
    assert sa.token_density(sa.band(w), n) == pytest.approx(((2 * w + 1) * n - w * (w + 1)) / n**2)
    assert sa.token_density(sa.block_local(16), n) == pytest.approx(16 / n)
    assert sa.token_density(sa.global_tokens(0, 1), n) == pytest.approx((4 * n - 4) / n**2)
    assert sa.token_density(sa.random_keys(n, 7), n) == pytest.approx(7 / n)
    # block density: a band of 256 on 128-tiles at n = 8192 computes 5 tiles a row, 3 fewer at the edges
    assert sa.block_density(sa.band(256), 8192) == pytest.approx((64 * 5 - 6) / 64**2)


def test_block_table_agrees_with_the_dense_mask():
    n, bs = 150, 16  # not a multiple of the block
    pattern = sa.bigbird(n, 16, 1, heads=2, seed=0)
    anys, fulls = sa.block_table(pattern, n, heads=2, block_size=bs)
    mask = dense(pattern, n, heads=2)
    assert torch.equal(anys, sa.tiles(mask, bs))
    assert fulls[:, :-1, :-1].eq(sa.tiles(~mask, bs)[:, :-1, :-1].logical_not()).all()
    assert not fulls[:, -1].any() and not fulls[:, :, -1].any()  # edge tiles stick out: never full


# ------------------------------------------------------------------------------------------------- kernels
def cases():
    """(name, pattern, n, batch, heads): odd n, one head, batch > 1, per-head patterns, empty rows."""
    return [
        ("band", sa.band(7), 200, 2, 3),
        ("dilated", sa.dilated(40, 4), 131, 1, 1),
        ("global", sa.global_tokens(0, 64), 129, 3, 1),
        ("random", sa.random_keys(150, 9, heads=2, seed=5), 150, 2, 2),
        ("block-local", sa.block_local(32), 100, 1, 2),
        ("Longformer", sa.longformer(6, [0, 50]), 257, 2, 1),
        ("BigBird", sa.bigbird(300, 16, 2, heads=2, seed=2), 300, 2, 2),
        ("Star", sa.star_transformer(3), 77, 1, 1),
        ("empty rows", sa.and_masks(sa.band(4), drop_late_queries), 140, 2, 2),
    ]


def random_qkv(batch, heads, n, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, n, d, generator=g) for _ in range(3)]


@pytest.mark.parametrize("kernel", ["naive", "sdpa_mask", "block_sparse"])
@pytest.mark.parametrize("name,pattern,n,batch,heads", cases(), ids=[c[0] for c in cases()])
def test_eager_kernels_match_the_reference(kernel, name, pattern, n, batch, heads):
    q, k, v = random_qkv(batch, heads, n)
    expected = sa.reference_attention(q, k, v, dense(pattern, n, heads))
    out = sa.KERNELS[kernel](q, k, v, pattern)
    assert not out.isnan().any()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("block_size", [7, 16, 64])
def test_block_sparse_any_block_size(block_size):
    pattern, n = sa.bigbird(100, 10, 1, heads=2, seed=1), 100
    q, k, v = random_qkv(2, 2, n)
    expected = sa.reference_attention(q, k, v, dense(pattern, n, 2))
    torch.testing.assert_close(sa.block_sparse_attention(q, k, v, pattern, block_size), expected, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def flex_cases():
    """Two pattern shapes only: every new pattern function costs a compilation."""
    return [
        (sa.and_masks(sa.band(4), drop_late_queries), 140, 2, 2),
        (sa.and_masks(sa.band(9), drop_late_queries), 257, 1, 1),
        (sa.bigbird(300, 16, 2, heads=2, seed=2), 300, 2, 2),
        (sa.bigbird(200, 16, 1, heads=3, seed=4), 200, 1, 3),
    ]


def test_compiled_flex_matches_the_reference(flex_cases):
    for pattern, n, batch, heads in flex_cases:
        q, k, v = random_qkv(batch, heads, n)
        expected = sa.reference_attention(q, k, v, dense(pattern, n, heads))
        out = sa.flex_sparse_attention(q, k, v, pattern)
        assert not out.isnan().any()
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_fully_masked_rows_give_zeros():
    pattern, n = sa.and_masks(sa.band(4), drop_late_queries), 140
    q, k, v = random_qkv(1, 2, n)
    for kernel in ("naive", "sdpa_mask", "block_sparse"):
        out = sa.KERNELS[kernel](q, k, v, pattern)
        assert torch.equal(out[:, :, 100:], torch.zeros_like(out[:, :, 100:])), kernel
        assert out[:, :, :100].abs().sum() > 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="window"):
        sa.band(-1)
    with pytest.raises(ValueError, match="dilation"):
        sa.dilated(4, 0)
    with pytest.raises(ValueError, match="keys_per_query"):
        sa.random_keys(5, 6)
    with pytest.raises(ValueError, match="one shape"):
        sa.naive_attention(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 5, 2), torch.zeros(1, 1, 5, 2), sa.band(1))
    with pytest.raises(TypeError, match="mask_mod"):
        sa.sdpa_attention(*random_qkv(1, 1, 4), "band")
    with pytest.raises(TypeError, match="bool"):
        sa.dense_mask(lambda b, h, q, kv: q - kv, 4)
    with pytest.raises(ValueError, match="unknown kernels"):
        list(sa.benchmark([64], kernels=["fast"]))


# --------------------------------------------------------------------------- against transformers' models
def test_longformer_attends_exactly_band_plus_global():
    from transformers import LongformerConfig, LongformerModel

    n, window, glob = 64, 8, [0, 40]
    config = LongformerConfig(attention_window=window, hidden_size=32, num_attention_heads=2,
                              num_hidden_layers=1, intermediate_size=64, max_position_embeddings=n + 2,
                              vocab_size=100)
    torch.manual_seed(0)
    model = LongformerModel(config).eval()
    ids = torch.randint(3, 100, (2, n))
    global_mask = torch.zeros(2, n, dtype=torch.long)
    global_mask[:, glob] = 1
    with torch.no_grad():
        out = model(ids, global_attention_mask=global_mask, output_attentions=True)
    attended = sa.longformer_attended(out.attentions[0], out.global_attentions[0], global_mask)
    assert torch.equal(attended, dense(sa.longformer(window // 2, glob), n).expand(2, 2, n, n))


def bigbird_model(train, block_size=8, random_blocks=2, seed=0):
    from transformers import BigBirdConfig, BigBirdModel

    config = BigBirdConfig(vocab_size=100, hidden_size=32, num_attention_heads=2, num_hidden_layers=2,
                           intermediate_size=64, max_position_embeddings=256, attention_type="block_sparse",
                           block_size=block_size, num_random_blocks=random_blocks, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    return BigBirdModel(config).train(train)


@pytest.mark.parametrize("train", [True, False])
def test_bigbird_block_sparse_attends_our_pattern(train):
    n, bs, r, heads = 128, 8, 2, 2
    model = bigbird_model(train, bs, r)
    with torch.no_grad():
        out = model(torch.randint(3, 100, (1, n)), output_attentions=True)
    n_blocks = n // bs
    window_and_global = dense(sa.or_masks(sa.band(1), sa.global_tokens(0, n_blocks - 1)), n_blocks)
    for layer in out.attentions:
        attended = layer[0] > 0
        random = sa.tiles(attended, bs) & ~window_and_global
        assert (random[:, 1:-1].sum(-1) == (r if train else 0)).all()  # eval draws no random blocks
        ours = sa.bigbird(n, bs, r, heads=heads, random_blocks=random)
        assert torch.equal(attended, dense(ours, n, heads))


def test_bigbird_falls_back_to_full_attention_on_short_inputs():
    bs, r = 8, 2
    n = (5 + 2 * r) * bs
    model = bigbird_model(True, bs, r)
    ids = torch.randint(3, 100, (1, n))
    with torch.no_grad():
        model(ids)  # switches the model to full attention
    assert model.attention_type == "original_full"
    seen = []
    hook = model.encoder.layer[0].attention.self.register_forward_hook(lambda m, i, o: seen.append(o[1]))
    with torch.no_grad():
        model(ids, output_attentions=True)
    hook.remove()
    assert torch.equal(seen[0][0] > 0, dense(sa.bigbird(n, bs, r), n).expand(2, n, n))


# ------------------------------------------------------------------------------- patterns since the book
def test_sliding_window_equals_transformers_mask_function():
    from transformers.masking_utils import sliding_window_causal_mask_function

    n, w = 50, 7
    i, j = grid(n)
    theirs = sliding_window_causal_mask_function(w)(0, 0, i, j)
    assert torch.equal(dense(sa.sliding_window(w), n)[0], theirs)
    assert torch.equal(dense(sa.causal(), n)[0], j <= i)
    with_sinks = sa.or_masks(sa.sliding_window(w), sa.and_masks(sa.causal(), sa.sink_tokens(4)))
    assert torch.equal(dense(with_sinks, n)[0], theirs | ((j < 4) & (j <= i)))


def test_kv_cache_mib_counts_keys_and_values_per_layer():
    # Mistral 7B (arXiv:2310.06825, Table 1): 32 layers, 8 KV heads of 128, fp16: 128 KiB per position
    assert sa.kv_cache_mib(1, layers=32, kv_heads=8, head_dim=128) == pytest.approx(0.125)
    assert sa.kv_cache_mib(32768, layers=32, kv_heads=8, head_dim=128, windows=4096) == pytest.approx(512)
    # two layers, one global and one with a window of 10, after 100 tokens: 110 positions kept
    assert sa.kv_cache_mib(100, layers=2, kv_heads=1, head_dim=1, windows=[None, 10], bytes_per_value=2**19) == 110
    with pytest.raises(ValueError, match="one window per layer"):
        sa.kv_cache_mib(10, layers=3, kv_heads=1, head_dim=1, windows=[None, 4])


def test_tile_states_mark_skipped_partial_and_full_tiles():
    states = sa.tile_states(sa.sliding_window(16), 64, block_size=16)
    expected = torch.zeros(4, 4, dtype=torch.long)
    for i in range(4):
        expected[i, i] = 1  # the diagonal tile: causal inside, so partial
        if i:
            expected[i, i - 1] = 1  # the window reaches 15 keys back: partial
    assert torch.equal(states, expected)
    assert (sa.tile_states(sa.full(), 64, block_size=16) == 2).all()


# ------------------------------------------------------------------ the block-sparse kernel's two paths
def test_block_sparse_slides_views_for_a_band_and_gathers_for_bigbird():
    n = 1024
    _, band_groups, _ = sa._gather_plan(sa.band(256), n, 2, sa.BLOCK_SIZE, "cpu")
    assert all(g["slide"] is not None for g in band_groups)
    middle = max(band_groups, key=lambda g: len(g["q_block"]))
    assert middle["bias"].shape[1] == 1  # away from the edges one mask serves every query tile
    _, bigbird_groups, _ = sa._gather_plan(sa.bigbird(n, 128, 1, heads=2), n, 2, sa.BLOCK_SIZE, "cpu")
    assert any(g["slide"] is None for g in bigbird_groups)
    assert all(g["bias"] is None for g in bigbird_groups)  # BigBird's blocks fill whole tiles
    for pattern, heads in ((sa.band(256), 2), (sa.bigbird(n, 128, 1, heads=2), 2), (sa.sliding_window(300), 1)):
        q, k, v = random_qkv(1, heads, n, d=64)
        expected = sa.reference_attention(q, k, v, dense(pattern, n, heads))
        torch.testing.assert_close(sa.block_sparse_attention(q, k, v, pattern), expected, atol=1e-5, rtol=0)


def test_block_sparse_gradients_match_the_reference_where_tiles_are_gathered():
    # gathered tiles go through reused buffers when no gradient is needed, fresh copies when one is
    n, heads = 1024, 2
    pattern = sa.bigbird(n, 128, 1, heads=heads, seed=3)
    assert any(g["slide"] is None for g in sa._gather_plan(pattern, n, heads, sa.BLOCK_SIZE, "cpu")[1])
    q, k, v = (t.double().requires_grad_() for t in random_qkv(1, heads, n))
    mask = dense(pattern, n, heads)
    weights = torch.randn(1, heads, n, q.shape[-1], dtype=torch.float64)
    grads = torch.autograd.grad((sa.block_sparse_attention(q, k, v, pattern) * weights).sum(), (q, k, v))
    expected = torch.autograd.grad((sa.reference_attention(q, k, v, mask) * weights).sum(), (q, k, v))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_block_sparse_takes_non_contiguous_inputs():
    q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in random_qkv(2, 3, 300))
    assert not q.is_contiguous()
    pattern = sa.or_masks(sa.sliding_window(40), sa.and_masks(sa.causal(), sa.sink_tokens(4)))
    expected = sa.reference_attention(q, k, v, dense(pattern, 300))
    torch.testing.assert_close(sa.block_sparse_attention(q, k, v, pattern), expected, atol=1e-5, rtol=0)


def _flex_cpu_tiles():
    path = Path(__file__).resolve().parents[1] / "scripts" / "flex_cpu_tiles.py"
    spec = importlib.util.spec_from_file_location("flex_cpu_tiles", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flex_cpu_tiles_script_finds_torchs_one_by_sixteen_tile_and_rejects_bad_tiles():
    # notebook 02 says torch's CPU FlexAttention template builds its q @ k^T micro-kernel with a 1 x 16 tile
    script = _flex_cpu_tiles()
    template = script.cpu_template().CppFlexAttentionTemplate
    assert "GemmBlocking(1, 16, 1)" in inspect.getsource(template.micro_gemm_define)
    assert script.parse_tile("8x32") == (8, 32)
    for bad in ("8", "8x20", "0x16", "ax16"):
        with pytest.raises(argparse.ArgumentTypeError, match="tile|rows"):
            script.parse_tile(bad)


def test_kv_cache_per_token_of_published_configurations():
    """Per-token KV caches in 16-bit numbers: Llama 3 8B (32 layers, 8 KV heads of 128; Llama 3 paper,
    Table 3) keeps 128 KiB; DeepSeek-V3's MLA (61 layers, a latent of 512 plus a rotary key of 64;
    DeepSeek-V3 paper, sec. 4.2) keeps 61 x 576 x 2 = 70,272 bytes, passed as one 'head' of 288."""
    assert sa.kv_cache_mib(1, layers=32, kv_heads=8, head_dim=128) * 2**20 == 128 * 1024
    assert sa.kv_cache_mib(1, layers=61, kv_heads=1, head_dim=288) * 2**20 == 61 * 576 * 2
    # grouped-query attention divides the multi-head cache by the queries per key-value head
    mha = sa.kv_cache_mib(8192, layers=32, kv_heads=32, head_dim=128)
    assert mha / sa.kv_cache_mib(8192, layers=32, kv_heads=8, head_dim=128) == 4


# ---- since the book: KV caches across heads, LSH buckets, top-k blocks, IO counts ----------------------

def test_kv_cache_per_token_matches_deepseek_v2_table_1():
    # DeepSeek-V2 (arXiv:2405.04434), Table 1: KV cache per token in elements is 2 n_h d_h l (MHA),
    # 2 n_g d_h l (GQA), 2 d_h l (MQA) and (d_c + d_h^R) l ~ 9/2 d_h l (MLA, d_c = 4 d_h, d_h^R = d_h / 2),
    # "equal to GQA with only 2.25 groups".
    d_h, n_h, layers = 128, 128, 60
    per = functools.partial(sa.kv_cache_per_token, layers=layers, bytes_per_value=1)
    assert per(kv_heads=n_h, head_dim=d_h) == 2 * n_h * d_h * layers
    assert per(kv_heads=1, head_dim=d_h) == 2 * d_h * layers
    mla = per(latent_dim=4 * d_h + d_h // 2)
    assert mla == 9 / 2 * d_h * layers == 2 * 2.25 * d_h * layers


def test_kv_cache_of_llama_3_and_deepseek_v3():
    # Llama 3 (arXiv:2407.21783) Table 3: 8B has 32 layers, 8 KV heads of 128; bf16 gives 128 KiB a token.
    assert sa.kv_cache_per_token(layers=32, kv_heads=8, head_dim=128) == 128 * 2**10
    assert sa.kv_cache_mib(131072, layers=80, kv_heads=8, head_dim=128) == 40 * 2**10  # 70B: 40 GiB at 128k
    # DeepSeek-V3: 61 layers, kv_lora_rank 512 + qk_rope_head_dim 64 = 576 values a layer
    assert sa.kv_cache_per_token(layers=61, latent_dim=576) == 61 * 576 * 2
    with pytest.raises(ValueError, match="either latent_dim"):
        sa.kv_cache_mib(10, layers=2, kv_heads=1, head_dim=8, latent_dim=16)
    with pytest.raises(ValueError, match="needs kv_heads and head_dim"):
        sa.kv_cache_per_token(layers=2, kv_heads=4)


def test_lsh_mask_through_the_kernel_equals_bucket_by_bucket_attention():
    generator = torch.Generator().manual_seed(0)
    qk, v = (torch.randn(1, 2, 300, 16, generator=generator) for _ in range(2))
    buckets = sa.lsh_buckets(qk[0], 6, seed=1)
    assert buckets.shape == (2, 300) and set(buckets.unique().tolist()) <= set(range(6))
    assert torch.equal(buckets, sa.lsh_buckets(3.0 * qk[0], 6, seed=1))  # angular: the scale does not matter
    out = sa.block_sparse_attention(qk, qk, v, sa.same_bucket(buckets, buckets))
    torch.testing.assert_close(out.double(), sa.bucket_attention_reference(qk, qk, v, buckets, buckets),
                               atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="even"):
        sa.lsh_buckets(qk[0], 5)


def test_top_k_blocks_picks_the_matching_block_and_runs_in_the_kernel():
    generator = torch.Generator().manual_seed(0)
    n, block, d = 512, 64, 32
    topics = torch.randn(1, n // block, d, generator=generator)
    partner = torch.tensor([3, 0, 6, 1, 7, 2, 5, 4])
    q = (topics.repeat_interleave(block, 1) + 0.1 * torch.randn(1, n, d, generator=generator))[None]
    k = (topics[:, partner.argsort()].repeat_interleave(block, 1) + 0.1 * torch.randn(1, n, d, generator=generator))[None]
    mask_mod, table = sa.top_k_blocks(q, k, 1, block_size=block)
    assert torch.equal(table[0].nonzero()[:, 1], partner)
    v = torch.randn(1, 1, n, d, generator=generator)
    torch.testing.assert_close(sa.block_sparse_attention(q, k, v, mask_mod),
                               sa.reference_attention(q, k, v, sa.dense_mask(mask_mod, n)).float(), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="multiple of block_size"):
        sa.top_k_blocks(q[..., :500, :], k[..., :500, :], 1, block_size=block)


def test_attention_io_counts():
    n, d, sram = 4096, 64, 98304
    assert sa.attention_io(n, d, sram, algorithm="naive", bytes_per_value=1) == 4 * n * d + 4 * n * n
    two_pass, online = (sa.attention_io(n, d, sram, algorithm=a) for a in ("tiled two-pass", "online softmax"))
    assert online < two_pass < sa.attention_io(n, d, sram, algorithm="naive")
    # Theorem 2 (Dao et al. 2022): Theta(n^2 d^2 / M) accesses; doubling M about halves them once n^2 d^2 / M dominates
    big = [sa.attention_io(65536, d, m, algorithm="online softmax") for m in (16384, 32768)]
    assert 1.8 < big[0] / big[1] < 2.1
    with pytest.raises(ValueError, match="unknown algorithm"):
        sa.attention_io(n, d, sram, algorithm="flash")
    with pytest.raises(ValueError, match="at least 4 rows"):
        sa.attention_io(n, d, 100, algorithm="naive")


def test_sparse_transformer_patterns_equal_the_papers_sets_and_reach_the_past_in_two_steps():
    n = 48
    past = torch.ones(n, n, dtype=torch.bool).tril()
    for kind, stride, summary in (("strided", 6, 1), ("strided", 5, 1), ("fixed", 6, 2), ("fixed", 7, 3)):
        mask = sa.dense_mask(sa.sparse_transformer(stride, kind, summary), n)[0]
        assert torch.equal(mask, sa.sparse_transformer_reference(n, stride, kind, summary))
        assert not mask.triu(1).any()
        assert torch.equal((mask.double() @ mask.double()) > 0, past)
    # strided: query 20 with l = 6 sees 14..20 and 8, 2 (every 6th back)
    row = sa.dense_mask(sa.sparse_transformer(6, "strided"), n)[0, 20].nonzero().flatten().tolist()
    assert row == [2, 8, 14, 15, 16, 17, 18, 19, 20]
    # fixed: query 20 with l = 6, c = 2 sees its block 18..20 and the last two of each earlier block
    row = sa.dense_mask(sa.sparse_transformer(6, "fixed", 2), n)[0, 20].nonzero().flatten().tolist()
    assert row == [4, 5, 10, 11, 16, 17, 18, 19, 20]
    with pytest.raises(ValueError, match="kind"):
        sa.sparse_transformer(4, "dilated")
    with pytest.raises(ValueError, match="summary"):
        sa.sparse_transformer(4, "fixed", 5)


def test_linformer_is_exact_with_identity_projections_and_pooling_matches_a_hand_computation():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 32, 8, dtype=torch.double) for _ in range(3))
    identity = torch.eye(32, dtype=torch.double)
    exact = sa.reference_attention(q, k, v, torch.ones(32, 32, dtype=torch.bool))
    torch.testing.assert_close(sa.linformer_attention(q, k, v, identity, identity), exact)
    e = sa.pooling_projection(32, 4, dtype=torch.double)
    assert e.shape == (4, 32) and torch.allclose(e.sum(dim=1), torch.ones(4, dtype=torch.double))
    k_mean, v_mean = k.unflatten(-2, (4, 8)).mean(-2), v.unflatten(-2, (4, 8)).mean(-2)
    by_hand = torch.softmax(q @ k_mean.transpose(-1, -2) / 8**0.5, dim=-1) @ v_mean
    torch.testing.assert_close(sa.linformer_attention(q, k, v, e, e), by_hand)
    errors = sa.linformer_error(q, k, v, [4, 32])
    assert errors[32] < 1e-12 < errors[4]
    with pytest.raises(ValueError, match="divide"):
        sa.pooling_projection(32, 5)
    with pytest.raises(ValueError, match="shape"):
        sa.linformer_attention(q, k, v, identity[:, :16], identity)


def test_chunked_causal_matches_transformers():
    from transformers.masking_utils import chunked_causal_mask_function

    n = 96
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    theirs = chunked_causal_mask_function(16, torch.zeros(1, dtype=torch.long))(0, 0, i, j)
    assert torch.equal(dense(sa.chunked_causal(16), n)[0], theirs)


def test_etc_is_band_plus_leading_globals():
    n = 40
    assert torch.equal(dense(sa.etc(2, 3), n), dense(sa.band(2), n) | dense(sa.global_tokens(0, 1, 2), n))


def test_round_verdict():
    assert sa.round_verdict([1.2, 1.5]) == "faster in every round"
    assert sa.round_verdict([0.5, 0.9]) == "slower in every round"
    assert sa.round_verdict([0.9, 1.1]) == "rounds disagree"


def test_transformers_longformer_and_bigbird_values():
    from transformers import LongformerConfig, LongformerModel

    torch.manual_seed(0)
    n = 64
    config = LongformerConfig(attention_window=8, hidden_size=32, num_attention_heads=2, num_hidden_layers=1,
                              intermediate_size=64, max_position_embeddings=n + 2, vocab_size=100)
    glob = torch.zeros(1, n, dtype=torch.long)
    glob[0, [0, 40]] = 1
    assert sa.longformer_value_check(LongformerModel(config).eval(), torch.randint(3, 100, (1, n)), glob) < 1e-6
    gaps = list(sa.bigbird_eval_value_check(sa.tiny_bigbird(False, 8, 2), torch.randint(3, 100, (1, 128))).values())
    assert gaps[1] < 1e-6 < 1e-3 < gaps[0]  # block 0 counted 1 + r times, not plain window + global attention


def test_sdpa_causal_work_counts_whole_key_blocks():
    # n = 1024: four query blocks of 256 need 256, 512, 768, 1024 keys; key blocks of 512 round that up to
    # 512, 512, 1024, 1024: 3072 keys per 256 rows
    assert sa.sdpa_causal_work(1024) == pytest.approx(256 * 3072 / 1024**2)
    assert sa.sdpa_causal_work(2048) == pytest.approx(0.625)
    assert sa.sdpa_causal_work(4096) == pytest.approx(0.5625)
    assert sa.sdpa_causal_work(300) == 1.0  # one key block holds every key
    with pytest.raises(ValueError, match="n"):
        sa.sdpa_causal_work(0)


def test_reach_of_a_band_grows_by_the_window_per_layer():
    n, w = 64, 2
    shares = sa.reach(dense(sa.band(w), n)[0], 3)
    for layers, share in enumerate(shares, start=1):
        i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
        assert share == pytest.approx(((i - j).abs() <= layers * w).float().mean().item())
    everything = sa.reach(dense(sa.or_masks(sa.band(1), sa.global_tokens(0)), n)[0], 2)
    assert everything[1] == 1.0  # any token -> global token 0 -> any token
    with pytest.raises(ValueError, match="square"):
        sa.reach(torch.ones(3, 4, dtype=torch.bool), 2)


def test_flex_skipping_ranges_hold_the_median():
    import pandas as pd

    results = pd.DataFrame([
        {"kernel": "flex", "pattern": "none", "density": 1.0, "speedup": 0.5, "speedup_low": 0.4, "speedup_high": 0.6,
         "of_ideal": 0.5},
        {"kernel": "flex", "pattern": "band", "density": 0.25, "speedup": 2.0, "speedup_low": 1.8, "speedup_high": 2.4,
         "of_ideal": 0.5}])
    split = sa.flex_skipping(results).loc["band"]
    assert split["skipping"] == pytest.approx(1.0)
    assert split["skipping, lowest"] == pytest.approx(1.8 * 0.25 / 0.6)
    assert split["skipping, highest"] == pytest.approx(2.4 * 0.25 / 0.4)


def test_compare_of_ideal_names_the_lengths_that_separate_two_patterns():
    import pandas as pd

    table = pd.DataFrame([
        {"n": 1024, "pattern": "a", "ideal": 2.0, "lowest": 0.4, "highest": 0.8},   # shares 0.2-0.4
        {"n": 1024, "pattern": "b", "ideal": 1.0, "lowest": 0.3, "highest": 0.5},   # shares 0.3-0.5: overlap
        {"n": 4096, "pattern": "a", "ideal": 4.0, "lowest": 2.0, "highest": 2.4},   # shares 0.5-0.6
        {"n": 4096, "pattern": "b", "ideal": 2.0, "lowest": 0.6, "highest": 0.8}])  # shares 0.3-0.4: lower
    lines = sa.compare_of_ideal(table, "a", "b")
    assert "overlap" in lines[0] and "b lower" in lines[1]
    assert lines[-1] == "lengths that separate the two: n = 4096 (b lower)"
    overlapping = sa.compare_of_ideal(table[table.n == 1024], "a", "b")
    assert overlapping[-1].startswith("no length separates the two in this run")
    # a's share climbs from 0.2-0.4 to 0.5-0.6; b's stays within 0.3-0.5 and 0.3-0.4
    assert sa.share_trend(table, "a").endswith("0.20-0.40 to 0.50-0.60, climbs: part of the cost stays fixed while the work grows")
    assert sa.share_trend(table, "b").endswith("the ranges overlap, no change this run can see")
    assert "falls" in sa.share_trend(table.assign(lowest=[0.4, 0.3, 0.2, 0.1], highest=[0.8, 0.5, 0.4, 0.2]), "a")
    with pytest.raises(ValueError, match="two lengths"):
        sa.share_trend(table[table.n == 1024], "a")


def _sparse_recall():
    path = Path(__file__).resolve().parents[1] / "scripts" / "sparse_recall.py"
    spec = importlib.util.spec_from_file_location("sparse_recall", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sparse_recall_masks_and_record_agree():
    # notebook 02's recall experiment: the masks are what its text says, and the shipped record was made with them
    import json

    script = _sparse_recall()
    p = script.PAIRS
    masks = script.masks()
    n = 2 * p + 1
    band, extra, queries, dense_ = (masks[k] for k in ("band", "band + 1 global token", "band + queries global", "dense"))
    assert band.shape == (n, n) and dense_.all()
    assert band[0].sum() == 1 and band[:, 0].sum() == 1  # the extra token sees and is seen by itself only
    assert band[5, 5 + script.WINDOW] and not band[5, 6 + script.WINDOW]
    assert extra[0].all() and extra[:, 0].all() and (extra[1:, 1:] == band[1:, 1:]).all()
    assert queries[p + 1:].all() and queries[:, p + 1:].all() and (queries[1:p + 1, 1:p + 1] == band[1:p + 1, 1:p + 1]).all()
    scattered = masks[f"band + {p} random global"]
    is_global = scattered.all(dim=1) & scattered.all(dim=0)
    assert int(is_global.sum()) == p and not is_global[0]  # as many global positions as queries, never the extra token
    assert (scattered[~is_global][:, ~is_global] == band[~is_global][:, ~is_global]).all()
    record = json.loads((Path(__file__).resolve().parents[1] / "data" / "sparse_attention" / "recall.json").read_text())
    assert record["command"] == "python scripts/sparse_recall.py"
    assert record["settings"]["pairs"] == p and record["settings"]["window"] == script.WINDOW
    placements = {tuple(torch.nonzero(script.masks(placement=at)[script.RANDOM].all(dim=1)).flatten().tolist())
                  for at in script.PLACEMENTS}
    assert len(placements) == len(script.PLACEMENTS)  # each placement puts the global tokens elsewhere
    assert record["settings"]["random_global_placements"] == list(script.PLACEMENTS)
    assert {(r["mask"], r["seed"], r.get("placement")) for r in record["runs"]} == (
        {(m, s, None) for m in masks if m != script.RANDOM for s in script.SEEDS}
        | {(script.RANDOM, s, at) for s in script.SEEDS for at in script.PLACEMENTS})
    for run in record["runs"]:
        drawn = script.masks(placement=run.get("placement", script.PLACEMENTS[0]))[run["mask"]]
        assert run["mask_density"] == round(drawn.float().mean().item(), 4)
        assert len(run["test_correct"]) == record["settings"]["test_sequences"]
        assert all(0 <= c <= p for c in run["test_correct"])


def test_recall_table_reads_the_record_and_scores_rules_that_ignore_the_query():
    import json

    record = json.loads((Path(__file__).resolve().parents[1] / "data" / "sparse_attention" / "recall.json").read_text())
    per_sequence, table, lines = sa.recall_table(record, [("band + queries global", "dense")])
    p = record["settings"]["pairs"]
    rows = table.set_index("mask")
    # dense and queries-global see every pair in one layer; the plain band only pairs within its window
    assert rows.loc["dense", "queries that see their pair"] == 1.0
    assert rows.loc["band + queries global", "queries that see their pair"] == 1.0
    assert rows.loc["band", "queries that see their pair"] < 0.2
    assert set(per_sequence) == set(rows.index) and len(per_sequence["band"]) == record["settings"]["test_sequences"]
    first = [r for r in record["runs"] if r["mask"] == "band"]
    assert per_sequence["band"][0] == pytest.approx(sum(r["test_correct"][0] for r in first) / (len(first) * p))
    assert lines[0].startswith(record["command"]) and "minus" in lines[-1]
    # the random control was trained on several placements: one printed line each, and the table says so
    placements = record["settings"]["random_global_placements"]
    assert sum(line.startswith("  placement ") for line in lines) == len(placements)
    seeds = len({r["seed"] for r in record["runs"]})
    assert all(f"over {seeds} seeds), pairs kept" in line for line in lines if line.startswith("  placement "))
    assert f"over {len(placements)} placements x" in rows.loc[f"band + {p} random global", "test recall over seeds"]


def test_flex_verdicts_read_both_outcomes():
    import pandas as pd

    split = pd.DataFrame({"tile speed vs SDPA": 0.75, "skipping": [0.8, 0.7, 0.8], "skipping, lowest": [0.7, 0.6, 0.65],
                          "skipping, highest": [0.9, 0.65, 1.1]}, index=["band", "dilated", "random 2%"])
    lines = sa.flex_verdicts(split, pairs=[("band", "dilated"), ("dilated", "random 2%")])
    assert "holds 1" in lines[0] and "(rounds combined 0.91-1.54 x)" in lines[0]  # two decimals: 0.91 is not 1
    # the smaller of the two factors, by the medians, named for each pattern
    assert lines[1] == ("the smaller factor by the medians (tile speed 0.75): band the tile speed (skipping 0.80), "
                        "dilated the skipping (skipping 0.70), random 2% the tile speed (skipping 0.80)")
    # a highest combination above 1 alone is not flagged: only a range wholly above 1, as for the masking cost
    assert lines[2].startswith("no pattern's skipping lies above 1 in every combination of rounds")
    assert "dilated lower" in lines[3] and "overlap" in lines[4]
    # with the tile speed's rounds, each pattern's skipping rounds, and whether the two factors' ranges overlap
    ranged = split.assign(**{"tile speed, lowest": 0.7, "tile speed, highest": 0.78})
    assert sa.flex_verdicts(ranged)[1] == (
        "the smaller factor by the medians (tile speed 0.75, rounds 0.70-0.78): band the tile speed (skipping 0.80, "
        "rounds 0.70-0.90, overlapping the tile speed's), dilated the skipping (skipping 0.70, rounds 0.60-0.65), "
        "random 2% the tile speed (skipping 0.80, rounds 0.65-1.10, overlapping the tile speed's)")
    split.loc["random 2%", ["skipping, lowest", "skipping, highest"]] = [0.6, 0.8]
    assert "more than a full one" in sa.flex_verdicts(split)[0]
    assert sa.flex_verdicts(split)[2].startswith("no pattern's skipping lies above 1")
    split.loc["band", ["skipping", "skipping, highest"]] = [1.3, 1.4]  # a median above 1 whose range holds 1: no flag
    assert sa.flex_verdicts(split)[-1].startswith("no pattern's skipping lies above 1")
    split.loc["band", "skipping, lowest"] = 1.1  # every round above 1: flagged, as for the masking cost
    split.attrs["paired"] = True  # dense and sparse flex timed in the same rounds: ranges are single rounds
    paired = sa.flex_verdicts(split)
    assert "more than a full one in every round" in paired[0] and "(rounds 1.25-1.67 x)" in paired[0]
    assert paired[-1].startswith("skipping above 1 in every round for band (1.10-1.40)")
    # with each pattern's share of partial tiles: printed beside the median, and the masked pattern's cost per
    # partial tile, from its cheapest to its costliest round, predicts a range for the others' skipping (all full: 1;
    # all partial: the masked pattern's own range); "apart" only when the rounds lie wholly outside that range
    split["partial share"] = [0.0, 1.0, 1.0]
    shares, predicted = sa.flex_verdicts(split)[2:4]
    assert shares == ("share of kept tiles that are partial, and median skipping: band 0.00 (1.30), dilated 1.00 "
                      "(0.70), random 2% 1.00 (0.80)")
    assert predicted == ("skipping predicted from random 2%'s cost per partial tile (1.25-1.67 x), against the rounds: "
                         "band 1.00 against 1.10-1.40 (rounds higher than predicted, apart), dilated 0.60-0.80 against "
                         "0.60-0.65 (the ranges overlap)")
    split.loc["dilated", ["skipping, lowest", "skipping, highest"]] = [0.4, 0.55]  # wholly below the range: apart
    assert sa.flex_verdicts(split)[3].endswith("dilated 0.60-0.80 against 0.40-0.55 (rounds lower than predicted, apart)")


def test_kv_cache_table_windows_cap_the_cache():
    from transformers import MistralConfig

    table = sa.kv_cache_table({"Mistral 7B": MistralConfig()}, tokens=(4096, 8192))
    assert list(table.kept) == [1.0, 0.5]  # every layer windowed at 4096: the cache stops growing there
    assert table["all global (MiB)"].iloc[1] == 2 * table["all global (MiB)"].iloc[0]


def test_benchmark_on_one_thread_restores_threads_and_window_reading_reads_the_table():
    import pandas as pd

    before = torch.get_num_threads()
    rows = list(sa.benchmark([256], patterns=["band w=256"], kernels=["block_sparse"], repeat=1, dense_flex=False,
                             threads=1))
    assert torch.get_num_threads() == before and {r["threads"] for r in rows} == {1}
    # `python -m utils.benchmarks --suite sparse` refuses a record with a field it does not list
    from utils import benchmarks

    assert all(set(r) <= set(benchmarks.RECORD_FIELDS) for r in rows) and rows[0]["dense_ms"] == rows[0]["ms"]
    window = pd.DataFrame({"n": [4096, 1024, 2048], "threads": [1, 1, 1], "pattern": ["w"] * 3, "ideal": [3.8, 1.6, 2.3],
                           "speedup (median)": [3.0, 1.2, 0.9], "lowest": [2.8, 1.1, 0.8], "highest": [3.3, 1.3, 1.1],
                           "verdict": ["faster in every round", "faster in every round", "rounds disagree"]})
    beats, trend, above = sa.window_reading(window, "w")
    assert above == "w: no round above its own ideal"
    assert beats == ("w on 1 thread, block-sparse against causal SDPA: faster in every round at n = 1024 (1.20 x, ideal "
                     "1.60), n = 4096 (3.00 x, ideal 3.80); rounds disagree at n = 2048 (0.90 x, ideal 2.30)")
    assert trend == sa.share_trend(window, "w") and "on 1 thread" in trend
    with pytest.raises(ValueError, match="no rows"):
        sa.window_reading(window, "other")
    # a causal calibration beyond 2n / (n + 1) is flagged as the load; a round above the ideal is named
    causal = pd.DataFrame({"n": [1024, 4096], "measured (median)": [2.24, 1.74], "lowest": [0.79, 1.48],
                           "highest": [2.31, 1.82]})
    window.loc[window.n == 1024, "highest"] = 2.0
    lines = sa.window_reading(window, "w", causal=causal)
    assert lines[0] == ("dense / causal SDPA: beyond what skipping every masked pair allows at n = 1024 (median 2.24 against at most 2.00, "
                        "rounds 0.79-2.31): there the rounds measure the load, not the kernel")
    assert lines[-1].startswith("w: a round above its own ideal at n = 1024 (1.25)")
    # with the counted column, the largest gap between count and median across lengths comes first
    causal["dense / causal time, counted"] = [1.33, 1.78]
    assert sa.window_reading(window, "w", causal=causal)[0].startswith(
        "dense / causal SDPA: the largest gap between the median and the count across lengths is 68.4% (n = 1024: 2.24 "
        "against 1.33); beyond what")
    # one decimal: a gap of 2.2% is not printed as "2%"
    causal["measured (median)"], causal["dense / causal time, counted"] = [1.31, 1.8186], [1.33, 1.7778]
    assert "is 2.3% (n = 4096: 1.82 against 1.78); no median beyond" in sa.window_reading(window, "w", causal=causal)[0]
    assert sa.partial_share(sa.band(128), 512) == 0.6  # 4 full diagonal tiles, 6 partial and sa.partial_share(sa.full(), 512) == 0


def test_benchmark_pairs_flex_with_its_own_dense_run_round_by_round():
    import pandas as pd

    rows = list(sa.benchmark([256], patterns=["band w=64"], kernels=["flex"], repeat=2, threads=1, window=64))
    flex = [r for r in rows if r["kernel"] == "flex" and r["pattern"] == "band w=64"][0]
    assert flex["skipping_low"] <= flex["skipping"] <= flex["skipping_high"]
    split = sa.flex_skipping(pd.DataFrame(rows))
    assert split.attrs["paired"] and split.loc["band w=64", "skipping"] == flex["skipping"]
    assert "tile speed, lowest" in split


def test_block_sparse_memory_counts_copies_only_where_tiles_are_gathered():
    n, heads = 1024, 2
    band = sa.block_sparse_memory(sa.band(256), n, heads=heads)
    bigbird = sa.block_sparse_memory(sa.bigbird(n, 128, 2, heads=heads), n, heads=heads)
    assert band["output"] == bigbird["output"] == heads * n * 64 * 4 / 2**20
    assert band["gathered tile copies"] == 0 < bigbird["gathered tile copies"]  # a band slides: views, no copies
    assert band["counted in all"] == pytest.approx(sum(v for k, v in band.items() if k != "counted in all"))
    q, k, v = (torch.randn(1, heads, n, 64) for _ in range(3))
    from utils.benchmarks import peak_mib

    for pattern, counted in ((sa.band(256), band), (sa.bigbird(n, 128, 2, heads=heads), bigbird)):
        sa.block_sparse_attention(q, k, v, pattern)  # the plan and its float mask are built and kept
        measured = peak_mib(lambda: sa.block_sparse_attention(q, k, v, pattern))
        assert counted["counted in all"] <= measured <= counted["counted in all"] + 2  # + SDPA's working buffers


def test_plot_speedup_draws_one_thread_runs_hollow():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    rows = [{"kernel": kernel, "pattern": pattern, "n": 4096, "threads": threads, "density": density,
             "speedup": s, "speedup_low": s * 0.9, "speedup_high": s * 1.1}
            for threads, s in ((2, 2.0), (1, 3.0))
            for kernel, pattern, density in (("flex", "band", 0.15), ("block_sparse", "band", 0.15),
                                             ("flex", "none", 1.0))]
    ax = sa.plot_speedup(pd.DataFrame(rows))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "1 thread (hollow, dotted)" in labels and "2 threads (filled)" in labels
    from matplotlib.collections import PathCollection

    hollow = [c for c in ax.collections if isinstance(c, PathCollection) and (c.get_facecolors()[:, :3] == 1).all()]
    assert len(hollow) == 3  # flex and block-sparse on the band, and flex's dense cross, on one thread
    plt.close(ax.figure)


def test_sdpa_attention_takes_the_fused_cpu_kernel():
    from torch.profiler import ProfilerActivity, profile

    q, k, v = (torch.randn(1, 2, 256, 16) for _ in range(3))
    for pattern in (sa.band(16), sa.bigbird(256, 32, 1, heads=2)):  # one mask for all heads, and one per head
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            sa.sdpa_attention(q, k, v, pattern)
        names = {e.name for e in prof.events()}
        assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names
        assert "aten::_scaled_dot_product_attention_math" not in names
