"""Griffe extension for the API reference (mkdocs.yml, mkdocstrings ``extensions:``).

modelstore's docstrings use NumPy sections, but write ``name : what it is`` where NumPy puts a
type after the colon; the type lives in the signature's annotations instead. Read as NumPy,
the prose would land in the *Type* column. Before griffe parses a docstring, this moves such
prose under the item as its description (the type then comes from the signature), and turns
Sphinx roles (``:func:`load```) into code spans Markdown shows.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ITEM_SECTIONS = {"parameters", "other parameters", "returns", "yields"}
_ROLE = re.compile(r":(?:func|class|meth|exc|attr|data|mod|obj):`~?([^`]+)`")
_ITEM = re.compile(r"^(\*{0,2}[A-Za-z_][\w, *]*?)\s+:\s+(.+)$")
# a NumPy type: a dotted name, optionally subscripted or joined with |, and nothing else
_TYPE = re.compile(r"^[\w.]+(\[[\w., \[\]|]*\])?(\s*\|\s*[\w.]+(\[[\w., \[\]|]*\])?)*$")


def rewrite(text: str) -> str:
    """The docstring with prose after ``name :`` moved under the item, and roles as code."""
    lines = _ROLE.sub(r"`\1`", text).splitlines()
    out: list[str] = []
    section = ""
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if nxt.strip() and set(nxt.strip()) == {"-"} and line.strip():
            section = line.strip().lower()
        elif section in ITEM_SECTIONS and line and not line[0].isspace():
            if section in {"returns", "yields"}:
                if not _TYPE.match(line.strip()) and set(line.strip()) != {"-"}:
                    out += [":", "    " + line.strip()]  # no name, no type: from the signature
                    continue
            else:
                match = _ITEM.match(line)
                if match and not _TYPE.match(match.group(2).strip()):
                    out += [match.group(1), "    " + match.group(2)]
                    continue
        out.append(line)
    return "\n".join(out)


class ProseTypes(griffe.Extension):
    """Rewrite each function's and class's docstring before it is parsed."""

    def _fix(self, obj: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)

    def on_function(self, *, func: griffe.Function, **kwargs: Any) -> None:
        self._fix(func)

    def on_class(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        self._fix(cls)
