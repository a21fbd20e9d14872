"""Why compiled FlexAttention on a CPU computes a tile slower than SDPA: time it with torch's own register
tile and with larger ones, against dense SDPA, in one run.

    python scripts/flex_cpu_tiles.py [--n 8192] [--tiles 1x16 4x16 8x16 16x16] [--rounds 7] [--json out.json]

torch 2.13's C++ template for FlexAttention on the CPU (``torch/_inductor/codegen/
cpp_flex_attention_template.py``, ``micro_gemm_define``) builds its fp32 q @ k^T micro-kernel with a register
tile of 1 x 16 (``GemmBlocking(1, 16, 1)``). With one row the kernel takes its inner-product branch (the
transposing branch needs ``24 * rows > head_dim``), which ends every score with a horizontal vector sum.
This script swaps that tile for larger ones (only the q @ k^T kernel: p @ v goes through ``cpublas::brgemm``
in float32), compiles one kernel per tile for the exact shapes, checks that every output equals the stock
kernel's to 1e-5, and times each in turn with dense SDPA (``time_pair``), reporting ``of_ideal`` as the sparse
suite of ``python -m utils.benchmarks`` does: speedup over dense SDPA times the fraction of 128 x 128 tiles computed.

It edits a private torch class for the length of the run, in this process only; it writes no file but the one
``--json`` names. It
stops with a message on a torch whose template is not the one described above.
"""
import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention.flex_attention import flex_attention  # noqa: E402

from utils import sparse_attention as sa  # noqa: E402
from utils.benchmarks import time_pair  # noqa: E402

STOCK = "1x16"


def parse_tile(text):
    try:
        rows, cols = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a tile is ROWSxCOLS, e.g. 8x16; got {text!r}") from None
    if rows < 1 or cols < 16 or cols % 16:
        raise argparse.ArgumentTypeError(f"rows >= 1 and cols a multiple of 16 (one AVX-512 vector); got {text!r}")
    return rows, cols


def cpu_template():
    """torch's CPU FlexAttention template class, checked to be the one this script knows how to change."""
    import torch._inductor.kernel.flex.flex_cpu  # noqa: F401  (imports the template without an import cycle)
    from torch._inductor.codegen import cpp_flex_attention_template as module

    method = getattr(getattr(module, "CppFlexAttentionTemplate", None), "micro_gemm_define", None)
    if method is None or "GemmBlocking(1, 16, 1)" not in inspect.getsource(method):
        raise SystemExit(f"torch {torch.__version__}: its CPU FlexAttention template does not build the 1 x 16 "
                         "micro-kernel this script replaces; nothing to compare.")
    return module


def tile_definer(module, rows, cols):
    """A replacement for ``micro_gemm_define`` whose q @ k^T micro-kernel has a rows x cols register tile."""
    from torch._inductor.codegen.cpp_gemm_template import CppTemplateKernel
    from torch._inductor.codegen.cpp_micro_gemm import CppMicroGemmFP32Vec
    from torch._inductor.utils import parallel_num_threads
    from torch._inductor.virtualized import V

    def micro_gemm_define(self, kernel_name):
        def micro_gemm(suffix, blocking, transpose_b):
            return CppMicroGemmFP32Vec(kernel_name + suffix, self.input_dtype, self.input_dtype,
                                       self.accumulate_dtype, self.accumulate_dtype,
                                       module.GemmBlocking(*blocking), 1, True, transpose_b)

        with V.set_graph_handler(V.graph):
            kernel = CppTemplateKernel("cpp_micro_gemm", parallel_num_threads())
            return (micro_gemm("_kernel_micro_gemm", (1, 16, 1), False).codegen_define(kernel)
                    + micro_gemm("_kernel_micro_gemm_transpose_b", (rows, cols, 1), True).codegen_define(kernel))

    return micro_gemm_define


def compiled_flex(name):
    """A fresh compiled FlexAttention: a function of its own, so dynamo does not reuse another tile's kernel."""
    namespace = {"flex_attention": flex_attention}
    exec(f"def flex_{name}(q, k, v, block_mask):\n    return flex_attention(q, k, v, block_mask=block_mask)\n",
         namespace)
    return torch.compile(namespace[f"flex_{name}"], dynamic=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--tiles", nargs="+", type=parse_tile, default=[(1, 16), (4, 16), (8, 16), (16, 16)])
    parser.add_argument("--rounds", type=int, default=7, help="timed calls of each kernel and of SDPA beside it")
    parser.add_argument("--json", help="also write the records to this file")
    args = parser.parse_args(argv)
    module = cpu_template()
    torch._inductor.config.fx_graph_cache = False  # a cached graph would carry the previous tile's kernel
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    stock_define = module.CppFlexAttentionTemplate.micro_gemm_define

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, args.heads, args.n, 64, generator=generator) for _ in range(3))
    patterns = {"none": sa.full(), **sa.benchmark_patterns(args.n, heads=args.heads)}
    patterns.pop("random 2%", None)  # every tile partial: nothing to skip
    masks = {name: sa.to_block_mask(mod, args.n, heads=args.heads) for name, mod in patterns.items()}
    density = {name: sa.block_density(mod, args.n, heads=args.heads) for name, mod in patterns.items()}

    kernels, outputs = {}, {}
    try:
        for rows, cols in dict.fromkeys(args.tiles):
            tile = f"{rows}x{cols}"
            module.CppFlexAttentionTemplate.micro_gemm_define = (
                stock_define if tile == STOCK else tile_definer(module, rows, cols))
            kernels[tile] = compiled_flex(tile)
            start = time.time()
            outputs[tile] = {name: kernels[tile](q, k, v, block_mask=mask) for name, mask in masks.items()}
            print(f"compiled tile {tile} for {len(masks)} patterns in {time.time() - start:.0f} s", flush=True)
    finally:
        module.CppFlexAttentionTemplate.micro_gemm_define = stock_define
    first = next(iter(outputs))
    for tile in outputs:
        for name in masks:
            error = (outputs[tile][name] - outputs[first][name]).abs().max().item()
            if error > 1e-5:
                raise SystemExit(f"tile {tile}, pattern {name}: output differs from tile {first}'s by {error:.2e}")
    del outputs

    def dense():
        return F.scaled_dot_product_attention(q, k, v)

    load = os.getloadavg()[0]
    print(f"\nn = {args.n}, {args.heads} heads of 64, float32, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; load average {load:.2f}; medians of {args.rounds} calls, each kernel timed in turn "
          "with dense SDPA")
    print(f"{'q @ k^T tile':>13} {'pattern':>20} {'tiles':>6} {'ms':>7} {'SDPA ms':>8} {'of ideal':>9}")
    records = []
    for tile, fn in kernels.items():
        for name, mask in masks.items():
            ms, dense_ms = time_pair(lambda: fn(q, k, v, block_mask=mask), dense, warmup=1, repeat=args.rounds)
            record = {"tile": tile, "pattern": name, "n": args.n, "density": density[name], "ms": ms,
                      "sdpa_dense_ms": dense_ms, "of_ideal": dense_ms / ms * density[name], "load": load}
            records.append(record)
            print(f"{tile:>13} {name:>20} {density[name]:6.3f} {ms:7.1f} {dense_ms:8.1f} {record['of_ideal']:9.2f}"
                  + ("   (torch's own)" if tile == STOCK and name == "none" else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
