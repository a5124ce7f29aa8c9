"""The front page and benchmarks/README.md: every relative link resolves, anchors included."""
import glob
import os
import re

import pytest

from tests.conftest import ROOT

DOCS = ["README.md", "benchmarks/README.md"] + [os.path.relpath(p, ROOT) for p in glob.glob(f"{ROOT}/docs/*.md")]


def anchors(path):
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces to '-'."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in open(path) if line.startswith("#")}


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc):
    text = re.sub(r"```.*?```|`[^`\n]*`", "", open(os.path.join(ROOT, doc)).read(), flags=re.S)  # not code
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    checked = 0
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        target, _, anchor = link.partition("#")
        path = os.path.normpath(os.path.join(ROOT, os.path.dirname(doc), target)) if target else \
            os.path.join(ROOT, doc)
        assert os.path.exists(path), f"{doc}: {link}"
        if anchor:
            assert anchor in anchors(path), f"{doc}: {link}"
        checked += 1
    assert checked > 0 or doc != "README.md"
