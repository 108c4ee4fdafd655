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
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False
intersphinx_mapping: dict[str, tuple[str, None]] = {}
html_theme = "alabaster"
exclude_patterns = ["_build"]
doctest_global_setup = "from macaroons_authz import *  # noqa: F403"
