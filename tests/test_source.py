import ast
import sys
import textwrap
import types

import pytest

from utils.source import print_source, source_text


def module_from(code, name="sample"):
    """A real module whose source inspect can read (written to a temporary file)."""
    import importlib.util
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(code))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect finds a class's file through its module
    spec.loader.exec_module(module)
    return module


SAMPLE = module_from('''\
    """Module docstring."""
    import functools


    def deco(fn):
        @functools.wraps(fn)
        def inner(*a):
            return fn(*a)
        return inner


    @deco
    def decorated(x):  # a comment on the def line
        """Decorated docstring."""
        # keep this comment
        match x:
            case [a, *_]:
                return a
            case {"k": v}:
                return v
            case _:
                return None


    class Outer:
        """Outer docstring,
        on two lines."""

        class Inner:
            """Inner docstring."""

            def method(self):
                """Method docstring."""
                return 1  # trailing comment

        async def fetch(self):
            """Async docstring."""
            await something()

        def only_doc(self):
            """Nothing but a docstring."""

        def one_line(self): """Doc on the def line."""

        def shares_line(self):
            """Doc."""; return "é"
    ''')


def test_comments_formatting_and_match_kept_docstring_removed():
    text = source_text(SAMPLE.decorated)
    assert text.startswith("@deco\ndef decorated(x):  # a comment on the def line\n")
    assert "# keep this comment" in text
    assert "case {\"k\": v}:" in text
    assert "Decorated docstring" not in text
    ast.parse(text)


def test_nested_classes_async_and_doc_only_bodies():
    text = source_text(SAMPLE.Outer)
    for doc in ["Outer docstring", "Inner docstring", "Method docstring", "Async docstring",
                "Nothing but a docstring", "Doc on the def line", "Doc."]:
        assert doc not in text
    assert "return 1  # trailing comment" in text
    assert "async def fetch(self):\n        await something()" in text
    assert "def only_doc(self):\n        ...\n" in text
    assert "def one_line(self): ...\n" in text
    assert 'def shares_line(self):\n        return "é"' in text
    assert text.startswith("class Outer:\n    class Inner:\n")  # no blank line left behind
    tree = ast.parse(text)
    assert [n.name for n in tree.body[0].body] == ["Inner", "fetch", "only_doc", "one_line",
                                                   "shares_line"]


def test_keeping_docstrings_returns_the_text_unchanged():
    assert '"""Method docstring."""' in source_text(SAMPLE.Outer.Inner.method, exclude_doc=False)


def test_module_and_method():
    text = source_text(SAMPLE)
    assert not text.startswith('"""') and text.startswith("import functools")
    assert source_text(SAMPLE.Outer.Inner.method) == "def method(self):\n    return 1  # trailing comment\n"


def test_installed_library_class(capsys):
    from transformers.models.vit.modeling_vit import ViTEmbeddings

    print_source(ViTEmbeddings)
    out = capsys.readouterr().out
    assert out.startswith("class ViTEmbeddings(nn.Module):\n")
    assert "self.cls_token" in out and "position_embeddings" in out
    assert '"""' not in out.split("def forward")[0]  # the class docstring is gone
    ast.parse(out)


@pytest.mark.parametrize("obj", [len, 3, types.SimpleNamespace()])
def test_objects_without_source_raise_type_error_naming_them(obj):
    with pytest.raises(TypeError, match=repr(obj).replace("(", r"\(").replace(")", r"\)")[:20]):
        print_source(obj)
