"""Sphinx configuration for macaroons_authz."""

import macaroons_authz

project = "macaroons_authz"
author = "macaroons_authz developers"
copyright = "2026, macaroons_authz developers"
release = macaroons_authz.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx_copybutton",
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False
intersphinx_mapping: dict[str, tuple[str, None]] = {}
html_theme = "furo"
html_title = "macaroons_authz"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
# The copy button copies commands and code, not the prompts or the output:
# with prompts to strip, only lines that start with one are copied.
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
exclude_patterns = ["_build"]
doctest_global_setup = "from macaroons_authz import *  # noqa: F403"


# Constants are documented by ``#:`` comments where they are defined, but
# autodoc looks for them in ``macaroons_authz/__init__.py``, which only
# re-exports them, and then shows the docstring of ``int`` or ``tuple``
# instead. Use the comment from the defining module, or nothing.
def _constant_docs() -> dict[str, list[str]]:
    import pkgutil

    from sphinx.pycode import ModuleAnalyzer

    docs: dict[str, list[str]] = {}
    names = ["macaroons_authz"]
    found_modules = pkgutil.walk_packages(macaroons_authz.__path__, "macaroons_authz.")
    # Analysing a module imports it: not __main__, which would run the CLI.
    names += [m.name for m in found_modules if not m.name.endswith(".__main__")]
    for module in names:
        try:
            found = ModuleAnalyzer.for_module(module).find_attr_docs()
        except Exception:  # noqa: S112 - a module without source has no comments
            continue
        for (namespace, attr), lines in found.items():
            if not namespace:
                docs.setdefault(attr, list(lines))
    return docs


_CONSTANT_DOCS = _constant_docs()


def _constant_docstring(app, what, name, obj, options, lines):
    if what != "data" or not name.startswith("macaroons_authz."):
        return
    own = _CONSTANT_DOCS.get(name.rsplit(".", 1)[1])
    if own is not None:
        lines[:] = own
    elif type(obj).__doc__ and getattr(obj, "__doc__", None) == type(obj).__doc__:
        lines[:] = []


# autodoc documents only the names a page lists: a name added to
# ``macaroons_authz.__all__`` and to no page would be missing from the API
# reference without a word. Say so (a warning, so an error under -W).
def _check_public_names(app, env):
    from sphinx.util import logging

    documented = env.get_domain("py").objects
    for name in macaroons_authz.__all__:
        if not name.startswith("__") and f"macaroons_authz.{name}" not in documented:
            logging.getLogger(__name__).warning(
                "macaroons_authz.%s is public but no page of docs/api/ documents it", name
            )


def setup(app):
    app.connect("autodoc-process-docstring", _constant_docstring)
    app.connect("env-check-consistency", _check_public_names)
