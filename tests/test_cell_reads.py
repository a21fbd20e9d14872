"""tests/cell_reads.py: which names a cell reads from earlier cells (what test_hub_cells keeps)."""
import ast

import pytest

from cell_reads import free_reads, reads_and_binds

CASES = [
    ("y = x + 1", {"x"}),
    ("x = 1\ny = x", set()),
    ("x = x + 1", {"x"}),  # the value runs before the target is bound
    ("x += 1", {"x"}),
    ("[name for name in names]", {"names"}),  # a comprehension's variable is its own
    ("{k: v for k, v in table.items() if k != skip}", {"table", "skip"}),
    ("[a for a in rows for b in a if b > limit]", {"rows", "limit"}),
    ("for name in names:\n    print(name)", {"print", "names"}),
    ("for name in names:\n    pass\nprint(name)", {"print", "names", "name"}),  # the loop may not run
    ("if flag:\n    x = 1\nprint(x)", {"flag", "print", "x"}),
    ("def f(a, b=default):\n    c = a + b\n    return c + offset", {"default", "offset"}),
    ("def f():\n    return later\nlater = 1\nf()", set()),  # the body runs after `later` is bound
    ("g = lambda a: a * scale", {"scale"}),
    ("import numpy as np\nnp.zeros(3)", set()),
    ("with open(path) as handle:\n    text = handle.read()\ntext.split()", {"open", "path"}),
    ("try:\n    import torch\nexcept ImportError as err:\n    print(err)\ntorch", {"ImportError", "print", "torch"}),
    ("class A(Base):\n    size = width\nA()", {"Base", "width"}),
    ("model.config.x = 1", {"model"}),
    ("if (n := count()) > 2:\n    print(n)", {"count", "print"}),
]


@pytest.mark.parametrize("source, expected", CASES)
def test_free_reads(source, expected):
    assert free_reads(ast.parse(source)) == expected


def test_binds_counts_only_what_every_path_binds():
    source = "import json\nx = 1\nfor i in range(3):\n    y = i\nif x:\n    z = 2\nrows[0] = 1\ndef f(): pass"
    assert reads_and_binds(ast.parse(source))[1] == {"json", "x", "f"}
