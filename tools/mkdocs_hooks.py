"""MkDocs hooks (mkdocs.yml ``hooks:``): publish the example and benchmark scripts the pages
link to, so ``../examples/quickstart.py`` works on the site as it does in the repository.

A link to a script that does not exist stays a broken link, and ``mkdocs build --strict``
fails on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("examples", "benchmarks")
_LINK = re.compile(r"\]\(\.\./((?:" + "|".join(FOLDERS) + r")/[^)\s]+)\)")


def on_files(files: Files, config: Any) -> Files:
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).glob("*.py")):
            files.append(
                File(
                    f"{folder}/{path.name}",
                    str(ROOT),
                    config["site_dir"],
                    config["use_directory_urls"],
                )
            )
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    # pages sit at the top of docs/, so ../examples/x.py (repository) is examples/x.py (site)
    if "/" in page.file.src_uri:
        return markdown
    return _LINK.sub(r"](\1)", markdown)
