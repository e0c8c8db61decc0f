"""Sphinx directives of cpoplib's manual that read the source tree, so
that what the pages list cannot drift from it.

``.. test-modules::``
    a definition list of tests/test_*.py, each with the first paragraph
    of its docstring.
"""
import ast
import os

from docutils import nodes
from docutils.parsers.rst import Directive

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _first_paragraph(path):
    with open(path, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read(), path))
    if not doc:
        raise ValueError("%s has no docstring" % path)
    return " ".join(doc.split("\n\n", 1)[0].split())


class TestModules(Directive):
    has_content = False

    def run(self):
        tests = os.path.join(ROOT, "tests")
        items = nodes.definition_list()
        for name in sorted(os.listdir(tests)):
            if not (name.startswith("test_") and name.endswith(".py")):
                continue
            path = os.path.join(tests, name)
            self.state.document.settings.record_dependencies.add(path)
            item = nodes.definition_list_item()
            item += nodes.term("", "", nodes.literal(text="tests/" + name))
            item += nodes.definition(
                "", nodes.paragraph(text=_first_paragraph(path)))
            items += item
        return [items]


def setup(app):
    app.add_directive("test-modules", TestModules)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
