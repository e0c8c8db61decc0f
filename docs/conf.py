"""Sphinx configuration of cpoplib's manual (docs/).

Built by .ci/docs with warnings as errors: the HTML site and the man page
of ``cpoplib fetch``.  Every example of the pages runs in the test suite
(tests/test_doc_examples.py) against the tests' Dovecot.  The API reference
is autodoc of the installed package (the C types' docstrings and text
signatures), so build it with cpoplib installed.
"""
import os
import sys

# _ext: the manual's own directives (cpoplib_docs.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "_ext"))

import cpoplib  # noqa: E402  (the installed build the reference documents)

project = "cpoplib"
author = "the cpoplib authors"
copyright = "cpoplib authors"
release = version = cpoplib.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "cpoplib_docs",
]
exclude_patterns = ["_build"]
# options are written --name: no en dashes for "--"
smartquotes = False
nitpicky = False
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
intersphinx_mapping = {}
html_theme = "alabaster"
html_title = "cpoplib %s" % release
html_static_path = []
man_pages = [
    ("man/cpoplib-fetch", "cpoplib-fetch",
     "download POP3 mailboxes to a Maildir, an mbox or .eml files",
     [author], 1),
]
