"""docs/walkthrough.md and its Chinese version: every snippet prints what the text says, every function
they name exists, and the two hold the same snippets."""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DOCS = [os.path.join(ROOT, "docs", name) for name in ["walkthrough.md", "walkthrough.zh-CN.md"]]
SCRIPTS = ["ppo_clip.py", "ppo_kl_adaptive.py", "ppo_continuous.py", "ppo_atari.py"]


def snippets(doc):
    """(code, expected output) pairs: each python block and the text block right after it."""
    blocks = re.findall(r"```(python|text)\n(.*?)```", open(doc).read(), re.S)
    pairs = [(code, out) for (kind, code), (next_kind, out) in zip(blocks, blocks[1:])
             if kind == "python" and next_kind == "text"]
    assert len(pairs) == sum(kind == "python" for kind, _ in blocks)  # no snippet without its output
    return pairs


def test_both_walkthroughs_hold_the_same_snippets():
    english, chinese = (snippets(doc) for doc in DOCS)
    assert english == chinese and len(english) >= 7


@pytest.mark.parametrize("code,expected", snippets(DOCS[0]), ids=lambda x: x.splitlines()[0][:40] if "\n" in x else None)
def test_snippet_prints_what_the_text_says(code, expected):
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-800:]
    assert result.stdout == expected


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_every_function_named_exists(doc):
    text, source = open(doc).read(), "".join(open(os.path.join(ROOT, s)).read() for s in SCRIPTS)
    named = set(re.findall(r"`(?:[\w.]+\.)?(\w+)\(", text)) | set(re.findall(r"`\w+\.(\w+)`", text))
    named = {name for name in named if len(name) > 4}  # not the paper's symbols, such as `r_t(theta)`
    named |= set(re.findall(r"`([a-z]+(?:_[a-z0-9]+)+)`", text))  # bare snake_case names: `compute_gae`
    assert {"compute_gae", "clipped_surrogate_loss", "update_beta", "logprob_entropy"} <= named
    for name in named:
        assert re.search(rf"def {name}\(|class {name}\b", source), name
