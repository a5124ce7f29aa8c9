"""The front page, benchmarks/README.md and docs/: every relative link resolves, anchors included, and every
benchmark command names a tool that is there and answers --help."""
import glob
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

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


# Fenced blocks, and inline spans, which may wrap a line but, as in Markdown, not cross a blank one.
CODE = re.compile(r"```.*?```|`(?:[^`\n]|\n(?![ \t]*\n))+`", re.S)
COMMAND = re.compile(r"\bpython3?\s+(benchmarks/[\w/.-]+\.py)\b")


def benchmark_tools() -> dict:
    """{path: the first doc naming it} of each file run as `python benchmarks/...` in the docs' code."""
    named = {}
    for doc in DOCS:
        for code in CODE.findall(open(os.path.join(ROOT, doc)).read()):
            for path in COMMAND.findall(code):
                named.setdefault(path, doc)
    return named


def test_every_benchmark_command_names_a_tool_that_answers_help():
    """A tool moved without its docs fails here, and so does one that starts its work before it reads its
    flags: `--help` must print a usage and exit 0, training or installing nothing."""
    named = benchmark_tools()
    assert "benchmarks/learning.py" in named, "no benchmark command found: the search is broken"
    missing = [f"{doc}: python {path}: no such file" for path, doc in named.items()
               if not os.path.isfile(os.path.join(ROOT, path))]
    assert not missing, "\n".join(missing)

    def help_of(path):
        return path, subprocess.run([sys.executable, path, "--help"], cwd=ROOT, capture_output=True, text=True,
                                    timeout=120)
    with ThreadPoolExecutor(2) as pool:  # the tools' imports (torch, gymnasium, ray) take most of the time
        answers = list(pool.map(help_of, sorted(named)))
    failed = [f"{named[path]}: python {path} --help exited {r.returncode}: {(r.stderr or r.stdout)[-300:]}"
              for path, r in answers if r.returncode != 0 or "usage:" not in r.stdout]
    assert not failed, "\n".join(failed)
