"""Show the source of Python objects as written, optionally without docstrings.

The text is sliced from the original file by the positions of AST nodes, so comments, blank
lines and formatting survive (an AST printer such as astor or ast.unparse would lose them).
"""
import ast
import inspect
import textwrap

__all__ = ["source_text", "print_source", "show_source"]

_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _raw_source(obj):
    try:
        text = inspect.getsource(obj)
    except (TypeError, OSError) as err:
        raise TypeError(f"print_source: no Python source is available for {obj!r} ({err})") from None
    return textwrap.dedent(text)


def _docstring_nodes(tree):
    """Yield (owner, docstring expression) for the module and every def/class in it."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, *_DEFINITIONS)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                yield node, first


def _strip_docstrings(text):
    tree = ast.parse(text)
    # AST columns count UTF-8 bytes: work on byte strings so non-ASCII lines stay aligned.
    blines = [line.encode("utf-8") for line in text.splitlines(keepends=True)]
    edits = []  # (first line, first column, last line, end column, replacement); lines 0-based
    for owner, doc in _docstring_nodes(tree):
        sl, sc, el, ec = doc.lineno - 1, doc.col_offset, doc.end_lineno - 1, doc.end_col_offset
        before, after = blines[sl][:sc].strip(), blines[el][ec:].strip()
        if len(owner.body) == 1 and not isinstance(owner, ast.Module):
            edits.append((sl, sc, el, ec, b"..."))  # keep a body so the code still parses
        elif not before and (not after or after.startswith(b"#")):
            below = el + 1 if el + 1 < len(blines) and not blines[el + 1].strip() else el
            edits.append((sl, 0, below + 1, 0, b""))  # whole lines (and one blank line after)
        else:  # shares its line, e.g. `def f(): """doc"""; return 1`: drop it and its `;`
            rest = blines[el][ec:]
            skip = len(rest) - len(rest.lstrip(b" \t;")) if rest.lstrip().startswith(b";") else 0
            edits.append((sl, sc, el, ec + skip, b""))
    for sl, sc, el, ec, new in sorted(edits, reverse=True):  # from the end: positions stay valid
        tail = blines[el][ec:] if el < len(blines) else b""
        joined = blines[sl][:sc] + new + tail
        blines[sl:el + 1] = [joined] if joined else []
    out = b"".join(blines).decode("utf-8")
    ast.parse(out)  # the result must still be valid Python
    return out


def source_text(obj, exclude_doc=True):
    """Return the source of a function, method, class or module as a string."""
    text = _raw_source(obj)
    return _strip_docstrings(text) if exclude_doc else text


def print_source(obj, exclude_doc=True):
    """Print the source of `obj` as plain text (comments and formatting kept)."""
    print(source_text(obj, exclude_doc=exclude_doc).rstrip("\n"))


def show_source(obj, exclude_doc=True):
    """Display the same text syntax-highlighted in Jupyter (HTML made by pygments)."""
    from IPython.display import HTML, display
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    formatter = HtmlFormatter(noclasses=True)
    display(HTML(highlight(source_text(obj, exclude_doc), PythonLexer(), formatter)))
