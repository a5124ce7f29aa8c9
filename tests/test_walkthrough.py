"""docs/walkthrough.md: every snippet prints what the text says, and every function it names exists."""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DOC = os.path.join(ROOT, "docs", "walkthrough.md")
SCRIPTS = ["ppo_clip.py", "ppo_kl_adaptive.py", "ppo_continuous.py", "ppo_atari.py"]


def snippets():
    """(code, expected output) pairs: each python block and the text block right after it."""
    blocks = re.findall(r"```(python|text)\n(.*?)```", open(DOC).read(), re.S)
    pairs = [(code, out) for (kind, code), (next_kind, out) in zip(blocks, blocks[1:])
             if kind == "python" and next_kind == "text"]
    assert len(pairs) == sum(kind == "python" for kind, _ in blocks)  # no snippet without its output
    return pairs


@pytest.mark.parametrize("code,expected", snippets(), ids=lambda x: x.splitlines()[0][:40] if "\n" in x else None)
def test_snippet_prints_what_the_text_says(code, expected):
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-800:]
    assert result.stdout == expected


def test_every_function_named_exists():
    text, source = open(DOC).read(), "".join(open(os.path.join(ROOT, s)).read() for s in SCRIPTS)
    named = set(re.findall(r"`(?:[\w.]+\.)?(\w+)\(", text)) | set(re.findall(r"`\w+\.(\w+)`", text))
    named = {name for name in named if len(name) > 4}  # not the paper's symbols, such as `r_t(theta)`
    named |= set(re.findall(r"`([a-z]+(?:_[a-z0-9]+)+)`", text))  # bare snake_case names: `compute_gae`
    assert {"compute_gae", "clipped_surrogate_loss", "update_beta", "logprob_entropy"} <= named
    for name in named:
        assert re.search(rf"def {name}\(|class {name}\b", source), name
