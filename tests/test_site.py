"""The course's website: built once per test session, read as HTML, then opened in a real browser.

The build needs requirements-site.txt; the browser tests also need Debian's chromium
(`apt-get install chromium`), driven by Playwright. Where either is missing, the tests say so in
their skip reason (pytest -rs, which pytest.ini turns on, prints it in the summary).
"""
import functools
import html
import http.server
import json
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest

from utils.core import REPO_ROOT
from utils.notebooks import colab_url
from utils.site import HIDE_SOLUTION, SHOW_SOLUTION, collapse_solutions, notebook_summaries

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
STEMS = [p.stem for p in NOTEBOOKS]
SITE_PACKAGES = ("sphinx", "myst_nb", "sphinx_book_theme", "mathjax")
REMOTE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//")


def _missing_site_packages():
    import importlib.util

    return [name for name in SITE_PACKAGES if importlib.util.find_spec(name) is None]


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The site, built once for the whole session (a failed build fails every test that uses it)."""
    missing = _missing_site_packages()
    if missing:
        pytest.skip(f"the site's packages are not installed ({', '.join(missing)}): "
                    "pip install -r requirements-site.txt")
    from utils.site import build

    return build(tmp_path_factory.mktemp("site") / "_site")


def _notebook(stem):
    return json.loads((REPO_ROOT / "notebooks" / f"{stem}.ipynb").read_text())


def _solutions(stem):
    """The number of worked solutions: source_hidden code cells after the Exercises heading."""
    cells = json.loads(collapse_solutions(json.dumps(_notebook(stem))))["cells"]
    return sum("hide-cell" in c.get("metadata", {}).get("tags", []) for c in cells)


def _images(stem):
    return sum(any(k.startswith("image/") for k in o.get("data", {}))
               for c in _notebook(stem)["cells"] for o in c.get("outputs", []))


def _has_math(stem):
    """Whether the notebook's markdown holds a formula (escaped dollars and code do not count)."""
    return bool(_formulas(stem))


def _formulas(stem):
    """The TeX of every $...$ and $$...$$ formula in the notebook's markdown (outside code), in order."""
    found = []
    for cell in _notebook(stem)["cells"]:
        if cell["cell_type"] == "markdown":
            text = re.sub(r"```.*?```|`[^`]*`", "", "".join(cell["source"]), flags=re.S).replace("\\$", "")
            found += [display or inline for display, inline in
                      re.findall(r"\$\$(.+?)\$\$|\$([^$]+?)\$", text, re.S)]
    return ["".join(tex.split()) for tex in found]


# ---------------------------------------------------------------- no browser needed

def test_collapse_solutions_marks_only_the_exercises_solutions():
    nb = {"cells": [
        {"cell_type": "code", "metadata": {"jupyter": {"source_hidden": True}}, "source": "setup()"},
        {"cell_type": "markdown", "metadata": {}, "source": "## Exercises\n\n**1.** Predict it."},
        {"cell_type": "code", "metadata": {}, "source": "check('one', answer)"},
        {"cell_type": "code", "metadata": {"jupyter": {"source_hidden": True}}, "source": "assert True"},
    ]}
    cells = json.loads(collapse_solutions(json.dumps(nb)))["cells"]
    assert cells[0]["metadata"]["tags"] == ["hide-input"]  # before the exercises: source only, as Jupyter
    assert "tags" not in cells[2]["metadata"]  # the reader's attempt and its check stay visible
    assert cells[3]["metadata"]["tags"] == ["hide-cell"]
    assert cells[3]["metadata"]["mystnb"] == {"code_prompt_show": SHOW_SOLUTION,
                                              "code_prompt_hide": HIDE_SOLUTION}


def test_every_notebook_has_a_title_and_a_promise_for_the_landing_page():
    summaries = notebook_summaries()
    assert [s for s, _, _ in summaries] == STEMS
    for stem, title, promise in summaries:
        assert title and len(promise.split()) >= 8, stem


def test_site_pages_quote_the_readme_commands_exactly():
    """A command line on the site that the README also gives is the README's, character for character."""
    readme = (REPO_ROOT / "README.md").read_text()
    for page in (REPO_ROOT / "site").glob("*.md"):
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.splitlines():
                command = line.split("  #")[0].rstrip()
                assert command in readme, f"site/{page.name}: {command!r} is not in the README"


def test_site_requirements_are_pinned():
    lines = [l.strip() for l in (REPO_ROOT / "requirements-site.txt").read_text().splitlines()
             if l.strip() and not l.lstrip().startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[^\s=]+", l) for l in lines), lines


def test_a_picture_from_another_host_fails_the_build(tmp_path, capsys):
    """The rule behind "nothing loads from another host": only the Colab badge is let through, as a link."""
    missing = _missing_site_packages()
    if missing:
        pytest.skip(f"the site's packages are not installed ({', '.join(missing)}): "
                    "pip install -r requirements-site.txt")
    from sphinx.cmd.build import build_main

    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(f"import sys\nsys.path.insert(0, {str(REPO_ROOT)!r})\n"
                                 "extensions = ['myst_parser', 'utils.site']\n"
                                 "source_suffix = {'.md': 'markdown'}\n")
    badge = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url('x')})"
    (src / "index.md").write_text(f"# A page\n\n{badge}\n\n![a cat](https://example.org/cat.png)\n")
    assert build_main(["-b", "html", "-W", "-q", str(src), str(tmp_path / "bad")]) != 0
    assert "picture from another host: https://example.org/cat.png" in capsys.readouterr().err
    (src / "index.md").write_text(f"# A page\n\n{badge}\n")
    assert build_main(["-b", "html", "-W", "-q", str(src), str(tmp_path / "good")]) == 0
    page = (tmp_path / "good" / "index.html").read_text()
    assert "colab-badge.svg" not in page and re.search(rf'href="{re.escape(colab_url("x"))}"[^>]*>Open In Colab</a>', page)


class _Loads(HTMLParser):
    """What a page asks the browser to load: script, style sheet, icon, font and media addresses."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "source", "audio", "video", "iframe", "embed", "track", "input"):
            self.urls.append(attrs.get("src") or "")
        if tag == "link" and set((attrs.get("rel") or "").split()) & {
                "stylesheet", "preload", "icon", "shortcut", "apple-touch-icon", "manifest", "modulepreload"}:
            self.urls.append(attrs.get("href") or "")
        if tag == "object":
            self.urls.append(attrs.get("data") or "")
        for style in re.findall(r"url\(([^)]*)\)", attrs.get("style") or ""):
            self.urls.append(style.strip("'\" "))


def test_no_page_loads_anything_from_another_host(site):
    remote = []
    for page in site.rglob("*.html"):
        parser = _Loads()
        parser.feed(page.read_text())
        remote += [f"{page.relative_to(site)}: {u}" for u in parser.urls if REMOTE.match(u)]
    for sheet in site.rglob("*.css"):
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", sheet.read_text(errors="replace")):
            if REMOTE.match(url):
                remote.append(f"{sheet.relative_to(site)}: {url}")
        remote += [f"{sheet.relative_to(site)}: @import {u}"
                   for u in re.findall(r"@import\s+(?:url\()?['\"]?([^'\"\s;)]+)", sheet.read_text(errors="replace"))
                   if REMOTE.match(u)]
    assert not remote, "\n".join(remote)


def test_mathjax_ships_with_the_site(site):
    script = site / "_static" / "mathjax" / "tex-svg.js"
    assert 'VERSION="3.2.2"' in script.read_text()
    assert (site / "_static" / "mathjax" / "LICENSE").is_file()
    assert (site / "_static" / "mathjax" / "input" / "tex" / "extensions" / "boldsymbol.js").is_file()
    page = (site / "notebooks" / "03_linear_attention.html").read_text()
    assert re.search(r'<script[^>]+src="\.\./_static/mathjax/tex-svg\.js', page)


@pytest.mark.parametrize("stem", STEMS)
def test_notebook_page_has_colab_download_and_collapsed_solutions(site, stem):
    page = (site / "notebooks" / f"{stem}.html").read_text()
    assert f'href="{colab_url(stem)}"' in page, "no Colab button for this notebook under REPO_URL"
    assert f'href="../_sources/notebooks/{stem}.ipynb"' in page, "no .ipynb download button"
    committed = (REPO_ROOT / "notebooks" / f"{stem}.ipynb").read_bytes()
    assert (site / "_sources" / "notebooks" / f"{stem}.ipynb").read_bytes() == committed
    assert page.count(SHOW_SOLUTION) == _solutions(stem) > 0
    assert "colab-badge.svg" not in page and "theme-switch-button" in page


@pytest.mark.parametrize("stem", STEMS)
def test_every_formula_of_a_notebook_is_math_on_its_page(site, stem):
    """A formula that MyST does not read as math shows its dollars as text (e.g. $$...$$ in a paragraph)."""
    page = (site / "notebooks" / f"{stem}.html").read_text()
    typeset = re.findall(r'<(?:span|div) class="math notranslate nohighlight">\s*\\[(\[](.*?)\\[)\]]\s*</', page, re.S)
    typeset = ["".join(html.unescape(tex).split()) for tex in typeset]
    # Sphinx wraps a display formula with line breaks in a split environment for MathJax
    typeset = [t[len(r"\begin{split}"):-len(r"\end{split}")] if t.startswith(r"\begin{split}") else t
               for t in typeset]
    assert typeset == _formulas(stem)


def test_landing_page_lists_every_notebook_with_its_colab_link(site):
    page = (site / "index.html").read_text()
    for stem in STEMS:
        assert f'href="notebooks/{stem}.html"' in page and f'href="{colab_url(stem)}"' in page


# ---------------------------------------------------------------- in a browser

def _chromium():
    for name in (os.environ.get("COURSE_CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def served(site):
    """The site served over HTTP on 127.0.0.1, as a static host would serve it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser(site):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed: pip install -r requirements-site.txt")
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium to drive: apt-get install chromium (Debian), or set COURSE_CHROMIUM "
                    "to a Chromium executable")
    with sync_playwright() as playwright:
        # Every host name but 127.0.0.1 fails to resolve: a page that reaches elsewhere fails fast,
        # and the visit records the request.
        browser = playwright.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        yield browser
        browser.close()


class _Visit:
    """A page in a fresh browser context that records console errors, uncaught errors, failed
    responses and every request to another host (which the browser cannot resolve, see `browser`)."""

    def __init__(self, browser, base):
        self.base, self.errors, self.offsite = base, [], []
        # No request interception: with it Chromium skips some requests (the favicon's) that a
        # reader's browser makes.
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.on("request", self._request)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"))

    def _request(self, request):
        if not request.url.startswith((self.base, "data:", "blob:")):
            self.offsite.append(request.url)

    def open(self, path):
        self.page.goto(f"{self.base}/{path}", wait_until="load")
        return self.page

    def close(self):
        self.context.close()


@pytest.fixture
def visit(browser, served):
    visits = []

    def open_(path, base=served):
        v = _Visit(browser, base)
        visits.append(v)
        return v, v.open(path)

    yield open_
    for v in visits:
        v.close()


def _check_figures_and_math(page, stem):
    decoded = page.evaluate("""async () => {
        const imgs = Array.from(document.querySelectorAll('main img'));
        await Promise.all(imgs.map(i => i.decode().catch(() => null)));
        return imgs.map(i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight]);
    }""")
    figures = [d for d in decoded if "/_images/" in d[0]]
    assert len(figures) == _images(stem), f"{len(figures)} figures on the page, {_images(stem)} in the notebook"
    assert all(w > 0 and h > 0 for _, w, h in decoded), [d for d in decoded if not (d[1] and d[2])]
    if _has_math(stem):
        page.wait_for_selector("mjx-container svg", state="attached", timeout=20_000)
        page.wait_for_function("() => !document.querySelector('.math:not(:has(mjx-container))')",
                               timeout=20_000)
        assert page.locator("mjx-merror, [data-mjx-error]").count() == 0, "a formula failed to typeset"


@pytest.mark.parametrize("stem", STEMS)
def test_notebook_page_in_a_browser(visit, stem):
    """Loads without a console error or an off-site request; figures decoded; formulas typeset;
    the Colab button opens this notebook under REPO_URL; a solution opens and closes."""
    v, page = visit(f"notebooks/{stem}.html")
    _check_figures_and_math(page, stem)
    page.locator(".dropdown-launch-buttons button").click()  # the rocket in the page's header
    launch = page.locator(".dropdown-launch-buttons a", has_text="Colab")
    assert launch.is_visible() and launch.get_attribute("href") == colab_url(stem)
    page.keyboard.press("Escape")

    details = page.locator("details.hide", has_text=SHOW_SOLUTION).first
    code = details.locator(".cell_input")
    assert not code.is_visible() and details.get_attribute("open") is None
    details.locator("summary").click()
    assert code.is_visible() and details.get_attribute("open") is not None
    assert details.locator("summary").inner_text().strip() == HIDE_SOLUTION
    details.locator("summary").click()
    assert not code.is_visible() and details.get_attribute("open") is None
    page.wait_for_timeout(200)  # let late scripts report
    assert not v.errors, v.errors
    assert not v.offsite, v.offsite


def _word_in_one_notebook_only(site):
    """A word of the search index that one notebook page holds and no other page does."""
    text = (site / "searchindex.js").read_text()
    index = json.loads(text[text.index("(") + 1:text.rindex(")")])
    docnames = index["docnames"]
    for term, docs in sorted(index["terms"].items()):
        docs = docs if isinstance(docs, list) else [docs]
        if len(term) < 7 or not term.isalpha() or len(docs) != 1:
            continue
        docname = docnames[docs[0]]
        if not docname.startswith("notebooks/"):
            continue
        page = (site / f"{docname}.html").read_text().lower()
        if re.search(rf"\b{term}\b", page):  # the word itself, so the search stems it to the same term
            return term, docname
    raise AssertionError("no word occurs in exactly one notebook")


def _search_finished(page):
    page.wait_for_function("() => /finished|did not match/.test("
                           "document.querySelector('#search-results p.search-summary')?.innerText || '')",
                           timeout=20_000)


def test_search_finds_a_word_that_one_notebook_holds(visit, site):
    word, docname = _word_in_one_notebook_only(site)
    v, page = visit(f"search.html?q={word}")
    _search_finished(page)
    links = page.locator("#search-results ul.search li > a").evaluate_all("as => as.map(a => a.href)")
    assert [l.split("/")[-1].split("#")[0] for l in links] == [f"{docname.split('/')[-1]}.html"], (word, links)
    page.wait_for_function("() => document.querySelector('#search-results li p.context')", timeout=10_000)
    assert not v.errors and not v.offsite, (v.errors, v.offsite)


def test_dark_mode_switches(visit):
    v, page = visit("index.html")
    page.locator("button.theme-switch-button").click()
    page.locator("button.theme-change-button[data-mode='dark']").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert not v.errors, v.errors


def test_the_site_opens_from_disk(visit, site):
    """file:// pages: figures, formulas and search work, with no console error."""
    base = site.as_uri()
    v, page = visit("notebooks/03_linear_attention.html", base=base)
    _check_figures_and_math(page, "03_linear_attention")
    page.goto(f"{base}/search.html?q=attention", wait_until="load")
    _search_finished(page)
    assert page.locator("#search-results ul.search li").count() >= 3
    assert not v.errors and not v.offsite, (v.errors, v.offsite)
