"""The course as a website, built from the committed notebooks and their committed outputs.

python -m utils.site build [--out DIR]
    builds the site into DIR (default _site/) with Sphinx, myst-nb and sphinx-book-theme, the
    versions pinned in requirements-site.txt, warnings as errors. The notebooks are never executed:
    each page shows the outputs saved in the notebook. DIR/index.html opens from disk, and DIR can
    be served as it is by any static host. Nothing is fetched while building, and the pages load
    nothing from another host: the theme's files come from its wheel, MathJax from a package.

This module is also the Sphinx extension that site/conf.py loads. It adds:
- the course's one convention for worked solutions: a code cell whose source is collapsed in
  Jupyter (cell metadata `"jupyter": {"source_hidden": true}`) is collapsed on the site too, with
  its outputs, behind a "Show the solution" toggle when it follows the "Exercises" heading;
- no picture from another host: a remote image is a build error, except the "Open in Colab" badge
  at the top of each notebook, which becomes a plain link (every page has its own Colab button);
- the directive `course-notebooks`, the table of notebooks on the landing page, written from each
  notebook's title and promise (its first cell) and its Colab link from REPO_URL;
- MathJax's SVG component (MathJax 3, no web fonts needed) copied into the site's _static/mathjax,
  and site/course.css and site/course.js (from disk, search lists its results without the line of
  text that browsers refuse to fetch from file:// addresses).
"""
import argparse
import json
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from .core import REPO_ROOT
from .notebooks import colab_url

NOTEBOOKS = REPO_ROOT / "notebooks"
SITE_CONFIG = REPO_ROOT / "site"  # conf.py and the pages that are not notebooks
DEFAULT_OUT = REPO_ROOT / "_site"
MATHJAX_SCRIPT = "mathjax/tex-svg.js"  # under _static/; site/conf.py's mathjax_path
SHOW_SOLUTION, HIDE_SOLUTION = "Show the solution", "Hide the solution"
_EXERCISES = re.compile(r"^#{1,6}\s+Exercises\b", re.M)
_REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://|^//")


# ---------------------------------------------------------------- what the pages are made of

def notebook_summaries():
    """(stem, title, promise) of every notebook, from its first cell: "# Title", then the promise."""
    found = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        first = json.loads(path.read_text())["cells"][0]
        lines = "".join(first["source"]).splitlines()
        if not lines or not lines[0].startswith("# "):
            raise ValueError(f"notebooks/{path.name}: the first cell does not start with '# Title'")
        promise = []
        for line in lines[1:]:
            if line.startswith("[!["):  # the Colab badge ends the promise
                break
            promise.append(line.strip())
        found.append((path.stem, lines[0][2:].strip(), " ".join(p for p in promise if p)))
    return found


def notebook_table(listed):
    """The landing page's table of notebooks, as MyST Markdown; `listed` is [(stem, short title)]."""
    promises = {stem: promise for stem, _, promise in notebook_summaries()}
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731 - a pipe would end the cell
    rows = ["| notebook | what you will do | run it |", "|---|---|---|"]
    for stem, short in listed:
        rows.append(f"| {{doc}}`{cell(short)} <notebooks/{stem}>` | {cell(promises[stem])} "
                    f"| [Open in Colab]({colab_url(stem)}) |")
    return "\n".join(rows)


def collapse_solutions(notebook_json):
    """The notebook's JSON with each `source_hidden` code cell collapsed the myst-nb way.

    After the "Exercises" heading such a cell is a worked solution: source and outputs go behind
    one toggle, whose label says so. Elsewhere only the source is collapsed, as Jupyter does.
    """
    nb = json.loads(notebook_json)
    in_exercises = False
    for cell in nb["cells"]:
        source = "".join(cell.get("source", ""))
        if cell["cell_type"] == "markdown" and _EXERCISES.search(source):
            in_exercises = True
        metadata = cell.setdefault("metadata", {})
        if cell["cell_type"] != "code" or not metadata.get("jupyter", {}).get("source_hidden"):
            continue
        tags = metadata.setdefault("tags", [])
        if in_exercises:
            tags.append("hide-cell")
            metadata.setdefault("mystnb", {}).update(code_prompt_show=SHOW_SOLUTION,
                                                     code_prompt_hide=HIDE_SOLUTION)
        else:
            tags.append("hide-input")
    return json.dumps(nb)


def mathjax_files():
    """{path under _static/: file} of the MathJax the site ships, from the django-static-mathjax wheel.

    That package (requirements-site.txt) is MathJax 3.2.2's distribution as static files; Django is
    not needed. The site takes the SVG component (one file, no fonts to load), the TeX extensions
    that it loads on demand, and the licence.
    """
    try:
        import mathjax
    except ImportError as err:
        raise RuntimeError("MathJax is missing: install requirements-site.txt "
                           "(.venv/bin/pip install -r requirements-site.txt)") from err
    root = Path(mathjax.__file__).resolve().parent / "static" / "mathjax"
    es5 = root / "es5"
    files = {MATHJAX_SCRIPT: es5 / "tex-svg.js", "mathjax/LICENSE": root / "LICENSE"}
    for path in sorted((es5 / "input" / "tex" / "extensions").rglob("*.js")):
        files[f"mathjax/{path.relative_to(es5).as_posix()}"] = path
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise RuntimeError(f"MathJax files missing from the installed package: {', '.join(missing)}")
    return files


# ---------------------------------------------------------------- the Sphinx extension

def _on_source_read(app, docname, source):
    if str(app.env.doc2path(docname)).endswith(".ipynb"):
        source[0] = collapse_solutions(source[0])


def _add_static(app):
    """Put MathJax and the course's style sheet and script where Sphinx copies static files from."""
    if app.builder.format != "html":
        return
    static = Path(app.doctreedir) / "_course_static"
    files = {**mathjax_files(), **{name: SITE_CONFIG / name for name in ("course.css", "course.js")}}
    for name, path in files.items():
        target = static / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    app.config.html_static_path.append(str(static))


def setup(app):
    from docutils import nodes
    from docutils.parsers.rst import directives
    from docutils.statemachine import StringList
    from sphinx.transforms import SphinxTransform
    from sphinx.util import logging
    from sphinx.util.docutils import SphinxDirective

    logger = logging.getLogger(__name__)
    colab_prefix = colab_url("x").split("/github/")[0] + "/github/"

    class NoRemotePictures(SphinxTransform):
        """A picture from another host is an error; the Colab badge becomes its link's text."""
        default_priority = 400

        def apply(self, **kwargs):
            for image in list(self.document.findall(nodes.image)):
                if not _REMOTE.match(image["uri"]):
                    continue
                parent = image.parent
                if isinstance(parent, nodes.reference) and parent.get("refuri", "").startswith(colab_prefix):
                    image.replace_self(nodes.Text(image.get("alt") or "Open in Colab"))
                    continue
                logger.warning(f"picture from another host: {image['uri']} (the site loads nothing "
                               "from elsewhere: ship the file in images/ and link it from there)",
                               location=image)

    class CourseNotebooks(SphinxDirective):
        """The notebooks in reading order, one `STEM: short title` a line: their table and toctree.

        The table gives each notebook's promise (from its first cell) and its Colab link; the hidden
        toctree puts the short titles in the site's navigation. Every notebook must be listed.
        """
        has_content = True
        option_spec = {"caption": directives.unchanged}

        def run(self):
            listed = []
            for line in self.content:
                stem, _, short = line.partition(":")
                if line.strip():
                    listed.append((stem.strip(), short.strip() or stem.strip()))
            known = {stem for stem, _, _ in notebook_summaries()}
            unknown = [stem for stem, _ in listed if stem not in known]
            missing = sorted(known - {stem for stem, _ in listed})
            if unknown or missing:
                raise self.error("course-notebooks: " + "; ".join(
                    ([f"no notebooks/{s}.ipynb" for s in unknown]) +
                    ([f"notebooks/{s}.ipynb is not listed" for s in missing])))
            toctree = ["```{toctree}", ":hidden:", f":caption: {self.options.get('caption', 'Notebooks')}",
                       "", *(f"{short} <notebooks/{stem}>" for stem, short in listed), "```"]
            text = notebook_table(listed) + "\n\n" + "\n".join(toctree)
            container = nodes.container(classes=["course-notebooks"])
            self.state.nested_parse(StringList(text.splitlines(), source="notebooks"),
                                    self.content_offset, container)
            for path in NOTEBOOKS.glob("*.ipynb"):
                self.env.note_dependency(str(path))
            return [container]

    app.connect("source-read", _on_source_read)
    app.connect("builder-inited", _add_static)
    app.add_css_file("course.css")
    app.add_js_file("course.js")
    app.add_transform(NoRemotePictures)
    app.add_directive("course-notebooks", CourseNotebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


# ---------------------------------------------------------------- building

def _stage(src):
    """The Sphinx source folder: the pages of site/ and the notebooks as they are committed."""
    src.mkdir(parents=True)
    for page in sorted(SITE_CONFIG.glob("*.md")):
        shutil.copyfile(page, src / page.name)
    (src / "notebooks").mkdir()
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        shutil.copyfile(path, src / "notebooks" / path.name)


def _clear(out, check_only=False):
    """Remove `out` if it is a site built before (or empty); refuse to delete anything else."""
    if not out.exists():
        return
    if not out.is_dir():
        raise SystemExit(f"{out} is a file, not a folder for the site")
    if any(out.iterdir()) and not (out / ".buildinfo").exists():
        raise SystemExit(f"{out} is not empty and holds no site built before (no .buildinfo): "
                         "choose another --out")
    if not check_only:
        shutil.rmtree(out)


def build(out=DEFAULT_OUT, quiet=True):
    """Build the site into `out` (emptied first), warnings as errors; returns `out` as a Path.

    Sphinx works in a temporary folder (myst-nb writes its own files next to the HTML folder), and
    `out` receives the finished HTML only once the build has succeeded.
    """
    from sphinx.cmd.build import build_main
    from sphinx.deprecation import RemovedInSphinx11Warning

    out = Path(out).resolve()
    _clear(out, check_only=True)  # before the work: the old site stays until the new one is built
    with tempfile.TemporaryDirectory(prefix="course-site-") as tmp, warnings.catch_warnings():
        # notices about the theme's and myst's own use of Sphinx's API, nothing a reader can act on
        warnings.simplefilter("ignore", RemovedInSphinx11Warning)
        src, build_dir = Path(tmp) / "src", Path(tmp) / "build"
        _stage(src)
        args = ["-b", "html", "-W", "--keep-going", "-c", str(SITE_CONFIG), "-d", str(build_dir / "doctrees"),
                *(["-q"] if quiet else []), str(src), str(build_dir / "html")]
        status = build_main(args)
        if status:
            raise SystemExit(f"the site did not build (sphinx-build exit status {status}); "
                             "the warnings above say why")
        _clear(out)
        shutil.copytree(build_dir / "html", out)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.site", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build the site into a folder (default _site/)")
    p_build.add_argument("--out", default=str(DEFAULT_OUT), help="the folder to build into")
    p_build.add_argument("--verbose", action="store_true", help="print Sphinx's progress lines")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = build(args.out, quiet=not args.verbose)
    pages = len(list(out.rglob("*.html")))
    try:
        shown = out.relative_to(Path.cwd())
    except ValueError:
        shown = out
    print(f"built {pages} HTML pages into {shown}/ in {time.perf_counter() - start:.0f} s; "
          f"open {shown}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
