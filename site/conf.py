"""Sphinx configuration of the course's website. Build it with `python -m utils.site build`.

The pages are site/*.md and the committed notebooks (never executed here); utils/site.py stages
them, runs Sphinx with warnings as errors, and is the extension that adds the course's own rules.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from utils.core import REPO_URL  # noqa: E402 - the one place the repository's URL lives
from utils.site import MATHJAX_SCRIPT  # noqa: E402

project = "Future Directions, runnable"
author = "the course's contributors"
html_title = project
language = "en"
extensions = ["myst_nb", "sphinx.ext.githubpages", "utils.site"]  # githubpages: a .nojekyll file
root_doc = "index"
# Named here, not left to the extensions: an in-process build after another one (the tests) then
# still reads Markdown and notebooks with myst-nb.
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# Notebooks: the committed outputs, as they are.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath"]
myst_dmath_double_inline = True  # $$...$$ inside a paragraph is display math, as in Jupyter

# MathJax from the site itself (utils.site copies it into _static/mathjax), never from a CDN.
mathjax_path = MATHJAX_SCRIPT

html_theme = "sphinx_book_theme"
html_favicon = "favicon.svg"  # the course's own drawing; without one, browsers ask the host for /favicon.ico
html_sourcelink_suffix = ""  # the download button gives the .ipynb itself
html_last_updated_fmt = None
html_theme_options = {
    "repository_url": REPO_URL,
    "repository_branch": "main",
    "path_to_docs": "",  # the site's notebooks/ is the repository's notebooks/
    "use_repository_button": True,
    "use_download_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "show_toc_level": 2,
}
# Light or dark as the reader's system prefers; the button in the header switches.
html_context = {"default_mode": "auto"}
