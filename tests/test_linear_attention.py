"""Tests of utils.linear_attention: every kernel against a reference, odd sizes, batch and heads.

Equalities of two orders of the same computation are checked in float64 at 1e-10 (their float32
rounding differs by more than the 1e-5 we would like to assert there, at these sums of many
positive terms); kernels against PyTorch's float32 SDPA are checked in float32 at 1e-5.
"""
import math

import pytest
import torch

from utils import linear_attention as la

B, H, N, D = 2, 3, 37, 16  # odd sequence length, batch and heads
FEATURE_MAPS = {"elu+1": la.elu_plus_one, "relu": la.relu_features,
                "favor+": la.FavorPlus(D, 64, seed=1)}


def qkv(n=N, d=D, dtype=torch.float64, seed=0, scale=1.0, dv=None):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, n, d, generator=gen, dtype=dtype) * scale
    k = torch.randn(B, H, n, d, generator=gen, dtype=dtype) * scale
    v = torch.randn(B, H, n, dv or d, generator=gen, dtype=dtype)
    return q, k, v


def masked_quadratic_reference(q, k, v, phi, causal):
    """Written out element by element from the kernel trick's formula, no shared code."""
    fq, fk = phi(q, is_query=True), phi(k, is_query=False)
    n = q.shape[-2]
    out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for i in range(n):
        keys = slice(0, i + 1) if causal else slice(0, n)
        w = (fq[..., i:i + 1, :] * fk[..., keys, :]).sum(-1)  # (B, H, keys)
        den = w.sum(-1, keepdim=True)
        out[..., i, :] = torch.where(den > 0, (w.unsqueeze(-1) * v[..., keys, :]).sum(-2)
                                     / torch.where(den > 0, den, 1), 0.0)
    return out


@pytest.mark.parametrize("name", FEATURE_MAPS)
@pytest.mark.parametrize("causal", [False, True])
def test_quadratic_order_matches_formula(name, causal):
    q, k, v = qkv(dv=11)
    phi = FEATURE_MAPS[name]
    got = la.quadratic_kernel_attention(q, k, v, phi, causal=causal)
    torch.testing.assert_close(got, masked_quadratic_reference(q, k, v, phi, causal), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", FEATURE_MAPS)
def test_linear_order_equals_quadratic_order(name):
    q, k, v = qkv(dv=11)
    phi = FEATURE_MAPS[name]
    torch.testing.assert_close(la.linear_kernel_attention(q, k, v, phi),
                               la.quadratic_kernel_attention(q, k, v, phi), rtol=0, atol=1e-10)


@pytest.mark.parametrize("chunk_size", [1, 5, 8, 37])
def test_linear_order_in_chunks_equals_one_pass(chunk_size):
    q, k, v = qkv(dv=11)  # a chunk size that does not divide n leaves a short last chunk
    torch.testing.assert_close(la.linear_kernel_attention(q, k, v, chunk_size=chunk_size),
                               la.quadratic_kernel_attention(q, k, v), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        la.linear_kernel_attention(q, k, v, chunk_size=0)


def test_linear_order_equals_quadratic_order_float32():
    q, k, v = qkv(dtype=torch.float32)
    torch.testing.assert_close(la.linear_kernel_attention(q, k, v),
                               la.quadratic_kernel_attention(q, k, v), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", FEATURE_MAPS)
@pytest.mark.parametrize("chunk_size", [1, 5, 8, 37, 64])
def test_chunked_causal_linear_equals_masked_quadratic(name, chunk_size):
    q, k, v = qkv(dv=11)
    phi = FEATURE_MAPS[name]
    torch.testing.assert_close(la.causal_linear_attention(q, k, v, phi, chunk_size=chunk_size),
                               la.quadratic_kernel_attention(q, k, v, phi, causal=True),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["elu+1", "relu"])
def test_recurrent_equals_masked_quadratic(name):
    q, k, v = qkv(dv=11)
    phi = FEATURE_MAPS[name]
    torch.testing.assert_close(la.recurrent_linear_attention(q, k, v, phi),
                               la.quadratic_kernel_attention(q, k, v, phi, causal=True),
                               rtol=0, atol=1e-10)


def test_causal_linear_float32_close_to_float64():
    q, k, v = qkv(n=300)
    want = la.quadratic_kernel_attention(q, k, v, causal=True)
    got = la.causal_linear_attention(q.float(), k.float(), v.float())
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5)


def test_relu_query_with_no_mass_gives_zero_not_nan():
    q, k, v = qkv(n=5)
    q[..., 0, :] = -1.0  # relu(q_0) = 0: this query sees nothing
    for out in (la.linear_kernel_attention(q, k, v, la.relu_features),
                la.causal_linear_attention(q, k, v, la.relu_features, chunk_size=2)):
        assert torch.isfinite(out).all()
        assert (out[..., 0, :] == 0).all()


def test_favor_recurrent_refused():
    with pytest.raises(ValueError, match="one token at a time"):
        la.LinearAttentionRNN(la.FavorPlus(D, 8))


def test_rnn_step_matches_sequence_and_constant_state():
    q, k, v = qkv(n=9)
    rnn = la.LinearAttentionRNN()
    want = la.quadratic_kernel_attention(q, k, v, causal=True)
    for t in range(9):
        out = rnn.step(q[..., t:t + 1, :], k[..., t:t + 1, :], v[..., t:t + 1, :])
        torch.testing.assert_close(out[..., 0, :], want[..., t, :], rtol=0, atol=1e-10)
        assert rnn.s.shape == (B, H, D, D) and rnn.z.shape == (B, H, 1, D)  # never grows


# ----------------------------------------------------------------------------- FAVOR+
def test_gaussian_projection_orthogonal_blocks_and_seed():
    w = la.gaussian_projection(40, 16, orthogonal=True, seed=3, dtype=torch.float64)
    assert w.shape == (40, 16)
    for block in (w[:16], w[16:32]):
        gram = block @ block.T
        torch.testing.assert_close(gram, torch.diag(torch.diagonal(gram)), rtol=0, atol=1e-10)
    torch.testing.assert_close(w, la.gaussian_projection(40, 16, seed=3, dtype=torch.float64))
    assert not torch.equal(w, la.gaussian_projection(40, 16, seed=4, dtype=torch.float64))
    iid = la.gaussian_projection(40, 16, orthogonal=False, seed=3, dtype=torch.float64)
    assert abs((iid[:16] @ iid[:16].T)[0, 1].item()) > 1e-3  # iid rows are not orthogonal


def test_gaussian_projection_rows_are_standard_normal():
    w = la.gaussian_projection(4096, 16, seed=0, dtype=torch.float64)
    assert abs(w.mean().item()) < 0.02
    assert abs(w.var().item() - 1) < 0.03
    assert abs((w.norm(dim=1) ** 2).mean().item() - 16) < 0.5  # chi-square with d dof


def test_favor_is_unbiased_for_the_softmax_kernel():
    d = 8
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, d, generator=gen, dtype=torch.float64) * 0.5
    phi = la.FavorPlus(d, 20000, orthogonal=False, seed=0)
    phi.projection = phi.projection.double()
    # without stabilisers: exp(w.x' - |x'|^2/2) / sqrt(m), x' = x / d^(1/4)
    xs, ys = x * d ** -0.25, y * d ** -0.25
    fx = torch.exp(phi.projection @ xs - xs @ xs / 2)
    fy = torch.exp(phi.projection @ ys - ys @ ys / 2)
    estimate = (fx * fy).mean()
    assert math.isclose(estimate.item(), math.exp(x @ y / math.sqrt(d)), rel_tol=0.03)


def test_favor_error_shrinks_with_more_features_and_orthogonal_helps():
    q, k, v = qkv(n=128, d=16, seed=2, scale=0.5)
    errors = {}
    for orthogonal in (False, True):
        for m in (16, 256):
            errors[orthogonal, m] = sum(la.favor_error(q, k, v, m, orthogonal=orthogonal, seed=s)
                                        for s in range(4)) / 4
    assert errors[True, 256] < errors[True, 16] / 2
    assert errors[False, 256] < errors[False, 16] / 2
    assert errors[True, 256] < errors[False, 256]


def test_favor_large_inputs_stay_finite():
    q, k, v = qkv(dtype=torch.float32, scale=100)
    phi = la.FavorPlus(D, 32)
    assert torch.isfinite(la.linear_kernel_attention(q, k, v, phi)).all()
    assert torch.isfinite(la.causal_linear_attention(q, k, v, phi)).all()


def unequal_halves(n, half, seed=0, factor=2.0):
    """q, k, v with one half of the keys (`half`: "first" or "second") scaled up by `factor`, so that
    the largest key feature of one half is far above that of the other."""
    q, k, v = qkv(n=n, dv=11, seed=seed)
    k[..., slice(0, n // 2) if half == "first" else slice(n // 2, n), :] *= factor
    return q, k, v


@pytest.mark.parametrize("half", ["first", "second"])
@pytest.mark.parametrize("chunk_size", [1, 7, 32, 48])
def test_favor_in_chunks_shares_one_key_stabiliser(half, chunk_size):
    """Keys in chunks, n > chunk_size, one half of the keys larger: every chunk must end up on the
    scale of the sequence's largest key feature, as in one pass (a stabiliser per chunk gave 0.2-0.4
    relative error here)."""
    q, k, v = unequal_halves(64, half)
    phi = FEATURE_MAPS["favor+"]
    one_chunk = la.linear_kernel_attention(q, k, v, phi, chunk_size=64)
    quadratic = la.quadratic_kernel_attention(q, k, v, phi)
    torch.testing.assert_close(one_chunk, quadratic, rtol=0, atol=1e-10)
    got = la.linear_kernel_attention(q, k, v, phi, chunk_size=chunk_size)
    torch.testing.assert_close(got, quadratic, rtol=0, atol=1e-10)
    torch.testing.assert_close(got, masked_quadratic_reference(q, k, v, phi, causal=False), rtol=0, atol=1e-10)


def test_favor_default_chunks_equal_one_pass_past_4096_keys():
    """The default chunk of 4096 with Gaussian inputs (the benchmark's case): 4133 keys are two chunks."""
    gen = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(1, 2, 4096 + 37, 16, generator=gen, dtype=torch.float64) for _ in range(3))
    phi = la.FavorPlus(16, 32, seed=2)
    torch.testing.assert_close(la.linear_kernel_attention(q, k, v, phi),
                               la.linear_kernel_attention(q, k, v, phi, chunk_size=4096 + 37),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("half", ["first", "second"])
@pytest.mark.parametrize("chunk_size", [512, 300])
def test_favor_1024_keys_in_unequal_chunks_match_one_chunk_and_quadratic(half, chunk_size):
    """n = 1024 > chunk_size, one half of the keys 1.5x larger, chunks of 512 (two) or of 300 (three
    full and one of 124 keys): chunked, one chunk and the quadratic form agree in float64 (a
    stabiliser per chunk was 50-80% off here), and the result is a softmax-like average (rows of
    nonnegative weights: each output inside the values' range)."""
    q, k, v = unequal_halves(1024, half, seed=3, factor=1.5)
    phi = la.FavorPlus(D, 64, seed=4)
    chunked = la.linear_kernel_attention(q, k, v, phi, chunk_size=chunk_size)
    one_chunk = la.linear_kernel_attention(q, k, v, phi, chunk_size=1024)
    quadratic = la.quadratic_kernel_attention(q, k, v, phi)
    torch.testing.assert_close(one_chunk, quadratic, rtol=0, atol=1e-10)
    assert ((chunked - one_chunk).norm() / one_chunk.norm()).item() < 1e-12
    torch.testing.assert_close(chunked, quadratic, rtol=0, atol=1e-10)
    assert (chunked <= v.amax(-2, keepdim=True) + 1e-12).all() and (chunked >= v.amin(-2, keepdim=True) - 1e-12).all()


@pytest.mark.parametrize("half", ["first", "second"])
@pytest.mark.parametrize("chunk_size", [1, 7, 32, 48])
def test_favor_causal_in_chunks_equals_masked_quadratic(half, chunk_size):
    q, k, v = unequal_halves(64, half)
    phi = FEATURE_MAPS["favor+"]
    want = la.quadratic_kernel_attention(q, k, v, phi, causal=True)
    torch.testing.assert_close(want, masked_quadratic_reference(q, k, v, phi, causal=True), rtol=0, atol=1e-10)
    torch.testing.assert_close(la.causal_linear_attention(q, k, v, phi, chunk_size=chunk_size), want,
                               rtol=0, atol=1e-10)


class _SequenceScaledElu:
    """elu+1 with all keys of a sequence divided by their largest feature: keys depend on each other
    (rowwise False) but, unlike FavorPlus, the map has no key_features to rescale chunks with."""
    rowwise = False

    def __call__(self, x, is_query=True):
        f = la.elu_plus_one(x)
        return f if is_query else f / f.amax(dim=(-2, -1), keepdim=True)


def test_sequence_dependent_keys_without_key_features_stay_in_one_chunk():
    q, k, v = unequal_halves(64, "second")
    phi = _SequenceScaledElu()
    torch.testing.assert_close(la.linear_kernel_attention(q, k, v, phi, chunk_size=16),
                               la.quadratic_kernel_attention(q, k, v, phi), rtol=0, atol=1e-10)


def test_favor_key_features_scale():
    """key_features returns phi(k) / exp(c) and c; the features' largest entry is 1 / sqrt(m)."""
    q, k, v = unequal_halves(20, "first")
    phi = FEATURE_MAPS["favor+"]
    fk, c = phi.key_features(k)
    assert c.shape == (B, H, 1, 1)
    torch.testing.assert_close(fk, phi(k, is_query=False), rtol=0, atol=0)
    torch.testing.assert_close(fk.amax(dim=(-2, -1)), torch.full((B, H), 64 ** -0.5, dtype=torch.float64),
                               rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- exact attention
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunks", [(1024, 4096), (7, 5), (5, 7), (16, 16), (1, 37)])
def test_chunked_exact_equals_sdpa(causal, chunks):
    q, k, v = qkv(dtype=torch.float32, dv=11)
    got = la.chunked_softmax_attention(q, k, v, causal=causal, query_chunk=chunks[0], key_chunk=chunks[1])
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_chunked_exact_cross_attention_lengths():
    q, _, _ = qkv(n=13, dtype=torch.float32)
    _, k, v = qkv(n=29, dtype=torch.float32, seed=1)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(la.chunked_softmax_attention(q, k, v, query_chunk=4, key_chunk=6),
                               want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_naive_equals_sdpa(causal):
    q, k, v = qkv(dtype=torch.float32)
    torch.testing.assert_close(la.naive_softmax_attention(q, k, v, causal=causal),
                               la.sdpa(q, k, v, causal=causal), rtol=0, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_running_max_survives_logits_scaled_by_100(causal):
    q, k, v = qkv(scale=100)  # logits of order 1e4: exp() alone would overflow even float64
    assert not torch.isfinite(torch.exp(q @ k.transpose(-2, -1) / 4)).all()
    # float32: must not overflow; float64: exact, since float32 rounding of logits near 1e4
    # is large enough to swap near-ties, so the float64 run is the one compared at 1e-5
    got32 = la.chunked_softmax_attention(q.float(), k.float(), v.float(), causal=causal,
                                         query_chunk=6, key_chunk=5)
    assert torch.isfinite(got32).all()
    got = la.chunked_softmax_attention(q, k, v, causal=causal, query_chunk=6, key_chunk=5)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_kv_cache_equals_causal_sdpa():
    q, k, v = qkv(n=10, dtype=torch.float32)
    cache = la.SoftmaxKVCache(10)
    steps = [cache.step(q[..., t:t + 1, :], k[..., t:t + 1, :], v[..., t:t + 1, :]) for t in range(10)]
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(torch.cat(steps, dim=-2), want, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="cache is full"):
        cache.step(q[..., :1, :], k[..., :1, :], v[..., :1, :])


# ----------------------------------------------------------------------------- bad input, helpers
def test_bad_inputs_name_the_problem():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="same feature size"):
        la.linear_kernel_attention(q, k[..., :5], v)
    with pytest.raises(ValueError, match="same number of keys"):
        la.chunked_softmax_attention(q, k, v[..., :5, :])
    with pytest.raises(ValueError, match="causal attention needs as many queries"):
        la.causal_linear_attention(q[..., :5, :], k, v)
    with pytest.raises(ValueError, match="leading"):
        la.naive_softmax_attention(q[:1], k, v)
    with pytest.raises(TypeError, match="share a dtype"):
        la.quadratic_kernel_attention(q.float(), k, v)
    with pytest.raises(TypeError, match="floating"):
        la.linear_kernel_attention(q.long(), k.long(), v.long())
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        la.causal_linear_attention(q, k, v, chunk_size=0)
    with pytest.raises(ValueError, match="key_chunk"):
        la.chunked_softmax_attention(q, k, v, key_chunk=2.5)
    with pytest.raises(ValueError, match="built for d=8"):
        la.linear_kernel_attention(q, k, v, la.FavorPlus(8, 4))
    with pytest.raises(ValueError, match="one token at a time"):
        la.LinearAttentionRNN().step(q, k, v)


def test_fit_slope_and_crossover():
    n = [256, 512, 1024, 2048]
    assert math.isclose(la.fit_slope(n, [3 * x ** 1.5 for x in n]), 1.5, abs_tol=1e-9)
    # slow ~ n^2/1000, fast ~ n: equal at n = 1000
    slow, fast = [x * x / 1000 for x in n], [float(x) for x in n]
    assert math.isclose(la.crossover_n(n, slow, fast), 1000, rel_tol=1e-9)
    assert la.crossover_n(n, fast, slow) is None
    assert la.crossover_n(n, [10.0] * 4, [1.0] * 4) == 256


def test_benchmark_kernels_compute_what_their_names_say():
    q, k, v = qkv(n=40, d=la.BENCH_SHAPE["dim"], dtype=torch.float32)
    exact = {"full": la.sdpa(q, k, v), "causal": la.sdpa(q, k, v, causal=True)}
    for name, (fn, pattern, top, top_long) in la.KERNELS.items():
        out = fn(q, k, v)
        assert out.shape == v.shape and top <= top_long
        if name in ("naive", "chunked exact", "chunked exact causal", "sdpa causal"):
            torch.testing.assert_close(out, exact[pattern], rtol=0, atol=1e-5)
    assert la.bench_sizes()[0] == 256 and la.bench_sizes()[-1] == 32768
    assert la.bench_sizes(long=True)[-1] == 131072


def test_bar_report_reads_one_run():
    import pandas as pd
    rows = [{"kernel": "linear", "pattern": "full", "n": n, "ms": n / 1000, "peak_mib": None}
            for n in (1024, 2048, 4096, 8192, 16384, 32768)]
    rows += [{"kernel": "sdpa", "pattern": "full", "n": 16384, "ms": 1638.4, "peak_mib": None},
             {"kernel": "naive", "pattern": "full, 1 head", "n": 16384, "ms": None, "peak_mib": 2048.0},
             {"kernel": "chunked exact", "pattern": "full, 1 head", "n": 16384, "ms": None, "peak_mib": 64.0}]
    rows += [{"kernel": "recurrent linear", "pattern": "generation", "n": t, "ms": ms, "peak_mib": None}
             for t, ms in ((4096, 0.03), (256, 0.02))]
    bars = list(la.bar_report(pd.DataFrame(rows)).values())
    assert bars[0] == pytest.approx(1.0) and bars[1] == pytest.approx(100.0)
    assert bars[2] == pytest.approx(32.0) and bars[3] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="no record for 'sdpa'"):
        la.bar_report(pd.DataFrame(rows[:6] + rows[7:]))


def test_negative_features_are_refused():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="nonnegative features"):
        la.linear_kernel_attention(q, k, v, lambda x, is_query=True: x)


def test_gradients_flow_through_the_in_place_steps():
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, 9, 4, generator=gen, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    for fn in (la.linear_kernel_attention,
               lambda q, k, v: la.causal_linear_attention(q, k, v, chunk_size=4),
               lambda q, k, v: la.linear_kernel_attention(q, k, v, la.FavorPlus(4, 8)),
               lambda q, k, v: la.linear_kernel_attention(q, k, v, la.FavorPlus(4, 8), chunk_size=4),
               lambda q, k, v: la.chunked_softmax_attention(q, k, v, causal=True, query_chunk=4, key_chunk=3)):
        assert torch.autograd.gradcheck(fn, (q, k, v))


# ----------------------------------------------------------------------------- gated state
def decayed_reference(q, k, v, phi, log_decay, normalize):
    """Written out pair by pair: D_ij = prod_{t=j+1..i} g_t (per head or per feature), no shared code."""
    fq, fk = phi(q, is_query=True), phi(k, is_query=False)
    gates = log_decay.exp()
    n = q.shape[-2]
    out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for i in range(n):
        num, den = 0, 0
        for j in range(i + 1):
            d = torch.ones_like(gates[..., 0:1, :] if gates.dim() == q.dim() else gates[..., 0:1])
            for t in range(j + 1, i + 1):
                d = d * (gates[..., t:t + 1, :] if gates.dim() == q.dim() else gates[..., t:t + 1])
            if gates.dim() == q.dim():
                w = (fq[..., i:i + 1, :] * d * fk[..., j:j + 1, :]).sum(-1)
            else:
                w = (fq[..., i:i + 1, :] * fk[..., j:j + 1, :]).sum(-1) * d
            num = num + w.unsqueeze(-1) * v[..., j:j + 1, :]
            den = den + w
        out[..., i:i + 1, :] = num / den.unsqueeze(-1) if normalize else num
    return out


def _identity(x, is_query=True):
    return x


@pytest.mark.parametrize("per_feature", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
def test_gated_recurrent_equals_parallel_masked_form(per_feature, normalize):
    q, k, v = qkv(n=11, d=5)
    gen = torch.Generator().manual_seed(7)
    shape = q.shape if per_feature else q.shape[:-1]
    log_decay = -torch.rand(shape, generator=gen, dtype=torch.float64)  # gates in (e^-1, 1]
    phi = la.elu_plus_one if normalize else _identity
    reference = decayed_reference(q, k, v, phi, log_decay, normalize)
    parallel = la.decayed_linear_attention(q, k, v, log_decay, phi, normalize=normalize)
    recurrent = la.recurrent_linear_attention(q, k, v, phi, log_decay=log_decay, normalize=normalize)
    torch.testing.assert_close(parallel, reference, rtol=0, atol=1e-10)
    torch.testing.assert_close(recurrent, reference, rtol=0, atol=1e-10)


def test_gate_of_one_is_plain_causal_linear_attention():
    q, k, v = qkv()
    ones = torch.zeros(q.shape[:-1], dtype=torch.float64)
    plain = la.quadratic_kernel_attention(q, k, v, causal=True)
    torch.testing.assert_close(la.decayed_linear_attention(q, k, v, ones), plain, rtol=0, atol=1e-10)
    torch.testing.assert_close(la.recurrent_linear_attention(q, k, v, log_decay=ones), plain, rtol=0, atol=1e-10)


def test_strong_decay_forgets_the_past():
    """With gates near 0 each output is (almost) v of its own token: the state keeps only the last key."""
    q, k, v = qkv()
    log_decay = torch.full(q.shape[:-1], -50.0, dtype=torch.float64)
    torch.testing.assert_close(la.decayed_linear_attention(q, k, v, log_decay), v, rtol=0, atol=1e-12)


def test_retnet_decays_match_the_paper():
    gammas = la.retnet_log_decays(4).exp()
    torch.testing.assert_close(gammas, torch.tensor([1 - 1 / 32, 1 - 1 / 64, 1 - 1 / 128, 1 - 1 / 256],
                                                    dtype=torch.float64), rtol=0, atol=1e-15)


def test_bad_gates_name_the_problem():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="log_decay must be <= 0"):
        la.decayed_linear_attention(q, k, v, torch.ones(q.shape[:-1], dtype=torch.float64))
    with pytest.raises(ValueError, match="log_decay must be shaped"):
        la.decayed_linear_attention(q, k, v, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="log_decay must be a floating"):
        la.recurrent_linear_attention(q, k, v, log_decay=torch.zeros(q.shape[:-1], dtype=torch.long))


# ----------------------------------------------------------------------------- inside GPT-2
def test_linear_attention_function_inside_gpt2():
    """The registered function: GPT-2's layer hands it (batch, heads, n, d) and gets what the masked
    quadratic form gives; the model stays causal and generates with a cache as without one."""
    q, k, v = qkv(dtype=torch.float32)
    out, weights = la.linear_attention_forward(None, q, k, v)
    assert weights is None and out.shape == (B, N, H, D)
    torch.testing.assert_close(out.transpose(1, 2), la.quadratic_kernel_attention(q, k, v, causal=True),
                               rtol=0, atol=1e-5)
    tail, _ = la.linear_attention_forward(None, q[..., -3:, :], k, v)  # 3 new queries, cached keys
    torch.testing.assert_close(tail, out[:, -3:], rtol=0, atol=1e-5)

    model = la.char_gpt(20, n_layer=2, d_model=16, n_head=2, block_size=32, attention=la.LINEAR_ATTENTION)
    assert all(block.attn.config._attn_implementation == la.LINEAR_ATTENTION for block in model.transformer.h)
    ids = torch.randint(0, 20, (2, 32), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 20:] = (changed[:, 20:] + 1) % 20
    with torch.no_grad():
        a, b = model(input_ids=ids).logits, model(input_ids=changed).logits
        softmax = la.char_gpt(20, n_layer=2, d_model=16, n_head=2, block_size=32)(input_ids=ids).logits
    torch.testing.assert_close(a[:, :20], b[:, :20], rtol=0, atol=1e-6)  # causal
    assert (a[:, 20:] - b[:, 20:]).abs().max() > 1e-3
    assert (a - softmax).abs().max() > 1e-5  # same weights, a different attention (small at init)
    generated = model.generate(ids[:, :5], max_new_tokens=10, do_sample=False)
    with torch.no_grad():
        full = model(input_ids=generated).logits
    assert torch.equal(full[:, 4:-1].argmax(-1), generated[:, 5:])
    with pytest.raises(ValueError, match="attention must be"):
        la.char_gpt(20, attention="softmax")


def test_generation_with_the_recurrent_state_matches_the_full_forward():
    """generate_with_state feeds one token per call; its per-layer states have a fixed size, and the
    logits at every position equal those of one causal forward over the whole text."""
    model = la.char_gpt(20, n_layer=2, d_model=16, n_head=2, block_size=32, attention=la.LINEAR_ATTENTION, seed=3)
    ids, state = la.generate_with_state(model, [3, 1, 4, 1, 5], 12)
    assert len(ids) == 17 and sorted(state) == [0, 1]
    assert all(rnn.s.shape == (1, 2, 8, 8) and rnn.z.shape == (1, 2, 1, 8) for rnn in state.values())
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids])).logits
        stepped = torch.cat([model(torch.tensor([[i]]), position_ids=torch.tensor([[t]]), use_cache=False,
                                   linear_state=fresh).logits for fresh in [{}] for t, i in enumerate(ids)], dim=1)
    torch.testing.assert_close(stepped, full, rtol=0, atol=1e-5)
    assert ids[5:] == full[0, 4:-1].argmax(-1).tolist()
    with pytest.raises(ValueError, match="positions"):
        la.generate_with_state(model, [1] * 30, 5)
    with pytest.raises(ValueError, match="not 'linear_elu'"):
        la.generate_with_state(la.char_gpt(20, n_layer=1, d_model=16, n_head=2, block_size=32), [1], 2)


def test_generation_summary_reads_growth_and_crossover():
    import pandas as pd

    t = [128, 384, 640, 896]
    records = pd.DataFrame([{"kernel": "recurrent linear", "n": n, "ms": 0.06} for n in t]
                           + [{"kernel": "softmax + KV cache", "n": n, "ms": 0.03 + 5e-5 * n} for n in t])
    table, cross, reading = la.generation_summary(records)
    assert table.loc["softmax + KV cache", "growth us per 1k tokens"] == pytest.approx(50.0)
    assert table.loc["recurrent linear", "growth us per 1k tokens"] == pytest.approx(0.0, abs=1e-9)
    assert cross == pytest.approx(600, rel=0.05)  # 0.03 + 5e-5 t = 0.06 at t = 600 (interpolated in log-log)
    assert reading == "the two curves cross 1 time; before t ~ 595 the cached step is the cheaper one in 2 of 2 windows"


def test_generation_summary_is_not_tilted_by_one_first_window_and_reads_the_passes():
    """A flat curve with a high first window has no growth (median of pairwise slopes), and the first
    window is read against the spread of the passes in the other windows."""
    import pandas as pd

    t = [64, 192, 320, 448, 576]
    flat = [0.14, 0.10, 0.10, 0.10, 0.10]
    records = pd.DataFrame([{"kernel": "recurrent linear", "n": n, "ms": ms, "passes_ms": [ms, ms * 1.02, ms * 0.99]}
                            for n, ms in zip(t, flat)])
    table, cross, reading = la.generation_summary(records)
    assert table.loc["recurrent linear", "growth us per 1k tokens"] == pytest.approx(0.0, abs=1e-9)
    assert table.loc["recurrent linear", "median of the others ms"] == pytest.approx(0.10)
    assert table.loc["recurrent linear", "passes' spread, others (largest)"] == pytest.approx(0.03)
    assert cross is None and reading.startswith("recurrent linear: first window 1.40x its trend line there (fitted to the others), a gap larger")
    records["passes_ms"] = [[ms, ms * 1.5, ms] for ms in flat]
    assert "a gap within the spread" in la.generation_summary(records)[2]
    grows = pd.DataFrame([{"kernel": "softmax + KV cache", "n": n, "ms": 0.03 + 5e-5 * n,
                           "passes_ms": [(0.03 + 5e-5 * n) * f for f in (1, 1.02, 0.99)]} for n in t])  # growth by design is on its own trend line, not a warm-up
    assert "first window 1.00x its trend line there (fitted to the others), a gap within" in la.generation_summary(grows)[2]


def test_generation_summary_gives_the_crossover_of_each_pass():
    import pandas as pd

    t = [128, 384, 640, 896]
    records = pd.DataFrame([{"kernel": "recurrent linear", "n": n, "ms": 0.06, "passes_ms": [0.06, 0.06, 1.0]} for n in t]
                           + [{"kernel": "softmax + KV cache", "n": n, "ms": 0.03 + 5e-5 * n,
                               "passes_ms": [0.03 + 5e-5 * n, 0.02 + 5e-5 * n, 0.03]} for n in t])
    reading = la.generation_summary(records)[2].splitlines()
    assert reading[1] == "the recurrent step is the cheaper one from t ~ 595, 797, never in each pass on its own"
    first, second, never = la.pass_crossovers(records)
    assert f"{first:.0f}, {second:.0f}" == "595, 797" and never is None


def test_generation_records_keep_each_pass_on_request():
    import pandas as pd

    records = pd.DataFrame(la.generation_records(8, repeats=2, window=4, passes=True))
    assert len(records) == 4 and all(len(p) == 2 for p in records.passes_ms)
    assert "passes_ms" not in next(la.generation_records(4, repeats=1, window=4))


def test_per_token_rise_and_block_size_reading():
    import pandas as pd

    rows = [{"kernel": kernel, "n": n, "repeat": r, "ms": n * (rise if n >= 8192 else 1) * (1 + 0.05 * r)}
            for kernel, rise in (("favor+", 1.5), ("linear", 1.0), ("causal linear", 0.9)) for n in (4096, 8192) for r in range(3)]
    reading = la.per_token_rise(pd.DataFrame(rows), ("favor+", "linear", "causal linear"), 8192)
    assert "favor+: 1.50 at 8192 (repeats within 0.10)" in reading
    assert reading.endswith("more than their repeats disagree: favor+ at 8192; rising within that: none; "
                            "not rising: linear at 8192, causal linear at 8192")
    blocks = pd.DataFrame({"n": [2048, 4096, 8192, 16384], "4096-key / 1024-key blocks, median": [1.05, 1.5, 0.7, 1.0],
                           "lowest": [0.9, 1.4, 0.65, 0.94], "highest": [1.2, 1.6, 0.75, 1.03]})
    assert la.block_size_reading(blocks).splitlines() == [
        "at 2048 tokens: 1.05x (repeats 0.90 to 1.20); cannot say: the repeats disagree more than the effect",
        "at 4096 tokens: 1.50x (repeats 1.40 to 1.60); the larger blocks cost more",
        "at 8192 tokens: 0.70x (repeats 0.65 to 0.75); the larger blocks cost less",
        "at 16384 tokens: 1.00x (repeats 0.94 to 1.03); no difference beyond 6%"]
    blocks["MiB faulted in per call, 4096-key"] = [100.0, 200.0, 50.0, 0.5]
    blocks["MiB faulted in per call, 1024-key"] = [0.0, 0.0, 0.0, 0.0]
    lines = la.block_size_reading(blocks).splitlines()
    assert lines[1].endswith("the larger blocks cost more; faulted in per call: 200 MiB against 0 MiB")
    assert lines[-1] == ("fresh pages against the cost, the larger blocks: at 2048, more pages and cost unclear; "
                         "at 4096, more pages and dearer; at 8192, more pages and cheaper; at 16384, as many pages and "
                         "no dearer: the pages do not follow the cost at every length with a verdict")
    follows = blocks.iloc[[1, 3]]
    assert la.block_size_reading(follows, first="two chunks").splitlines()[-1].endswith(
        "at 16384, as many pages and no dearer: the pages follow the cost at every length with a verdict")


def test_block_size_times_pairs_the_two_block_sizes():
    (record,) = la.block_size_times([64], large=64, small=32, repeat=3)
    assert record["n"] == 64 and record["score block MiB"] == 4 * 32 * 64 * 4 / 2**20
    assert 0 < record["lowest"] <= record["64-key / 32-key blocks, median"] <= record["highest"]
    assert record["MiB faulted in per call, 64-key"] >= 0 and record["MiB faulted in per call, 32-key"] >= 0


def test_favor_chunk_times_pairs_chunks_with_one_chunk():
    (record,) = la.favor_chunk_times(96, chunk=32, repeat=2)
    assert record["n"] == 96 and 0 < record["lowest"] <= record["3 chunks / one chunk, median"] <= record["highest"]
    assert {"MiB faulted in per call, 3 chunks", "MiB faulted in per call, one chunk"} <= set(record)


def test_length_times_gives_time_per_token_and_milliseconds():
    (record,) = la.length_times("causal linear", 64, 192, repeat=3)
    assert record["n"] == 192 and 0 < record["lowest"] <= record["per token, 192 / 64, median"] <= record["highest"]
    assert record["ms at 64"] > 0 and record["ms at 192"] > 0
    assert {"MiB faulted in per call, 192", "MiB faulted in per call, 64"} <= set(record)


def test_causal_skip_times_pairs_causal_with_bidirectional():
    (record,) = la.causal_skip_times([64], query_chunk=32, repeat=3)
    assert record["share of blocks computed"] == 0.75 and record["bidirectional ms"] > 0 and record["causal ms"] > 0
    assert 0 < record["lowest"] <= record["causal / bidirectional"] <= record["highest"]
    assert record["MiB faulted in per call, causal"] >= 0 and record["MiB faulted in per call, bidirectional"] >= 0


def test_measure_calls_a_slow_kernel_least_repeats_times_after_its_warm_up():
    calls = []
    x = torch.zeros(1, 1, 4, 2)
    ms, _ = la._measure(lambda q, k, v: calls.append(1), x, x, x, device="cpu", budget_ms=0, least_repeats=1)
    assert len(calls) == 2 and ms >= 0  # the peak-memory call, then one timed call
    calls.clear()
    la._measure(lambda q, k, v: calls.append(1), x, x, x, device="cpu", budget_ms=1e9, most_repeats=7)
    assert len(calls) == 8


def test_slopes_fit_each_kernel_from_a_length_up():
    import pandas as pd

    rows = [{"kernel": kernel, "n": n, "ms": n ** power * (5 if n < 2048 else 1)}
            for kernel, power, top in (("a", 1.0, 8192), ("b", 2.0, 4096), ("c", 1.0, 2048)) for n in (1024, 2048, 4096, 8192)
            if n <= top]
    fitted = la.slopes(pd.DataFrame(rows))
    assert list(fitted.index) == ["a", "b"] and fitted["a"] == pytest.approx(1.0) and fitted["b"] == pytest.approx(2.0)
    assert la.slopes(pd.DataFrame(rows), from_n=1024)["c"] < 0  # 5x at 1024 tilts it


def test_char_ngram_loss_by_hand():
    # bigrams of "abab": ab, ba, ab; contexts a, b, a. Test "ab": P(b | a) = (2 + k) / (2 + 2k), vocabulary {a, b}
    k = 0.5
    assert la.char_ngram_loss("abab", "ab", order=2, add_k=k) == pytest.approx(-math.log((2 + k) / (2 + 2 * k)))
    # unigram (order 1): P(a) = (2 + k) / (4 + 3k) with vocabulary {a, b, c}, c unseen
    expected = -(math.log((2 + k) / (4 + 3 * k)) + math.log(k / (4 + 3 * k))) / 2
    assert la.char_ngram_loss("abab", "ac", order=1, add_k=k) == pytest.approx(expected)
    with pytest.raises(ValueError, match="add_k > 0"):
        la.char_ngram_loss("abab", "ab", add_k=0)


def test_split_text_in_reading_order():
    text = "".join(chr(65 + i % 26) for i in range(1000))
    train, val, test = la.split_text(text)
    assert train + val + test == text and (len(train), len(val), len(test)) == (900, 50, 50)
    with pytest.raises(ValueError, match="fractions"):
        la.split_text(text, 0.6, 0.5)


def test_sweep_refuses_unknown_kernels():
    with pytest.raises(ValueError, match="unknown kernels"):
        list(la.sweep([256], {"flash": 1024}))
    records = list(la.sweep([64], {"linear": 64, "sdpa": 32}, budget_ms=1))
    assert [r["kernel"] for r in records] == ["linear"] and records[0]["ms"] > 0


def test_ngram_window_losses_score_the_models_targets():
    """Per window: the mean of the n-gram's per-character losses at positions 1..B-1, the characters a
    windowed model predicts; the text's first order-1 characters (no full context) are left out."""
    train, test, order, block = "abcabdabcabd" * 5, "abdabcabca", 3, 4
    per_char = la.char_ngram_losses(train, test, order)
    assert all(math.isnan(x) for x in per_char[:order - 1]) and len(per_char) == len(test)
    assert la.char_ngram_loss(train, test, order) == pytest.approx(sum(per_char[order - 1:]) / (len(test) - order + 1))
    got = la.ngram_window_losses(train, test, order, block)
    assert len(got) == len(test) // block  # the last 2 characters make no full window
    assert got[0] == pytest.approx(sum(per_char[2:4]) / 2)  # positions 1..3 of window 0, minus the one without context
    assert got[1] == pytest.approx(sum(per_char[5:8]) / 3)


def test_window_losses_average_to_loss_on():
    from utils.scaling import CharWindows, char_vocab, loss_on

    text = "It is a truth universally acknowledged, that a single man " * 4
    vocab = char_vocab(text)
    windows = CharWindows(text, vocab, 16)
    model = la.char_gpt(len(vocab), n_layer=1, d_model=16, n_head=2, block_size=16)
    per_window = la.window_losses(model, windows, batch_size=5)
    assert per_window.shape == (len(windows),)
    assert per_window.mean() == pytest.approx(loss_on(model, windows), rel=1e-5)


def test_quality_comparisons_on_a_made_up_record():
    """Linear is 0.1 nats worse than softmax on every window of every seed; the n-gram 0.3 worse than softmax."""
    gen = torch.Generator().manual_seed(0)
    soft = (1.5 + 0.2 * torch.rand(3, 40, generator=gen, dtype=torch.float64)).tolist()
    record = {"seeds": [0, 1, 2],
              "results": [{"attention": a, "seed": s, "val_loss": 1.5, "test_loss": 1.5 + d}
                          for s in range(3) for a, d in (("softmax (sdpa)", 0.0), ("elu+1 linear", 0.1))],
              "test_windows": {"losses": {"softmax (sdpa)": soft, "elu+1 linear": [[x + 0.1 for x in r] for r in soft]},
                               "ngram": {"order": "5-gram", "losses": [x + 0.3 for x in torch.tensor(soft).mean(0).tolist()]}},
              "baselines": {"5-gram": {"val_loss": 1.8, "test_loss": 1.8}}, "ngram_chosen_on_validation": "5-gram"}
    comparisons = la.quality_comparisons(record, group=4)
    for s in range(3):
        assert comparisons[f"linear - softmax, seed {s}"].difference == pytest.approx(0.1)
    assert comparisons["linear - softmax, mean of seeds"].difference == pytest.approx(0.1)
    assert comparisons["softmax (sdpa) - 5-gram, mean of seeds"].difference == pytest.approx(-0.3)
    table = la.quality_seeds(record)
    assert table["model"].tolist() == ["softmax (sdpa)", "elu+1 linear", "5-gram (chosen on validation)"]
    assert table["test mean"].tolist() == pytest.approx([1.5, 1.6, 1.8])


def test_repeat_summary_reads_slopes_and_spread_per_repeat():
    import pandas as pd

    n = [2048, 4096, 8192]
    records = pd.DataFrame([{"kernel": "linear", "n": x, "repeat": r, "ms": (1 + 0.5 * r) * x / 1000} for r in range(3) for x in n]
                           + [{"kernel": "naive", "n": 2048, "repeat": r, "ms": 10.0} for r in range(3)])
    table = la.repeat_summary(records)
    assert table.loc["linear", "slope median"] == pytest.approx(1.0)
    assert table.loc["linear", "slope min"] == pytest.approx(1.0) and table.loc["linear", "slope max"] == pytest.approx(1.0)
    assert table.loc["linear", "largest spread of a point"] == pytest.approx((2.0 - 1.0) / 1.5)  # times 1, 1.5, 2
    assert math.isnan(table.loc["naive", "slope median"])  # one size: no slope
    assert table.loc["naive", "largest spread of a point"] == 0


def test_memory_records_hold_at_least_the_score_matrix_for_the_naive_kernel():
    records = list(la.memory_records([512], kernels=("naive",)))
    assert records[0]["scores_mib"] == pytest.approx(1.0)  # 512 x 512 float32
    assert records[0]["peak_mib"] >= records[0]["scores_mib"]
    with pytest.raises(ValueError, match="unknown kernels"):
        list(la.memory_records([512], kernels=("nope",)))


def test_uniform_attention_error_is_zero_for_equal_scores_and_large_for_peaked_attention():
    gen = torch.Generator().manual_seed(0)
    q, v = (torch.randn(1, 1, 64, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    # zero queries: every score equal, softmax attention is exactly the mean of V
    assert la.uniform_attention_error(torch.zeros_like(q), q, v) < 1e-12
    # keys that are scaled copies of the queries: each query picks out one key, the mean of V is far off
    peaked = la.planted_keys(4 * q, noise=0.0, seed=1)
    assert la.uniform_attention_error(4 * q, peaked, v) > 0.9


def test_planted_keys_are_a_permutation_of_the_queries_and_reject_negative_noise():
    q = torch.randn(2, 3, 10, 4, generator=torch.Generator().manual_seed(0))
    k = la.planted_keys(q, noise=0.0, seed=3)
    assert torch.equal(torch.sort(k[0, 0, :, 0]).values, torch.sort(q[0, 0, :, 0]).values)
    with pytest.raises(ValueError, match="noise"):
        la.planted_keys(q, noise=-1.0)


def test_cache_numbers_fixed_for_mamba_growing_for_gpt2():
    from transformers import MambaConfig, MambaForCausalLM

    config = MambaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, state_size=4, conv_kernel=3, expand=2)
    mamba = MambaForCausalLM(config).eval()
    gpt = la.char_gpt(50, n_layer=3, d_model=32, n_head=2, block_size=64).eval()
    table = la.cache_table({"mamba": mamba, "gpt": gpt}, [5, 40]).set_index(["model", "tokens"])
    inner = 2 * 16
    for n in (5, 40):
        assert table.loc[("mamba", n), "conv state"] == 2 * inner * 3
        assert table.loc[("mamba", n), "recurrent state"] == 2 * inner * 4
        assert table.loc[("mamba", n), "keys and values"] == 0
        assert table.loc[("gpt", n), "keys and values"] == table.loc[("gpt", n), "total"] == 3 * 2 * 32 * n
    with pytest.raises(ValueError, match="n_tokens must be a positive int"):
        la.cache_numbers(gpt, 0)


def test_causal_block_share_counts_the_blocks_the_causal_kernel_computes():
    assert la.causal_block_share(1024) == 1.0 and la.causal_block_share(512) == 1.0  # one block, all of it
    assert la.causal_block_share(2048) == 0.75  # blocks (0, 0), (1, 0), (1, 1) of 2 x 2
    assert la.causal_block_share(4096) == 10 / 16
    assert la.causal_block_share(1500) == (1024 * 1024 + 476 * 1500) / 1500 ** 2
    assert la.causal_block_share(12, query_chunk=4, key_chunk=2) == (4 * 4 + 4 * 8 + 4 * 12) / 144
    with pytest.raises(ValueError, match="n"):
        la.causal_block_share(0)
