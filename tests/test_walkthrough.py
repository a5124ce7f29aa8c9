"""docs/walkthrough.md and its Chinese version: every snippet prints what the text says, every function they name
exists, the two hold the same code (comments may be translated), and every part asks before it explains and ends
with key points and flashcards."""
import io
import json
import os
import re
import subprocess
import sys
import tokenize

import pytest

from tests.conftest import ROOT

DOCS = [os.path.join(ROOT, "docs", name) for name in ["walkthrough.md", "walkthrough.zh-CN.md"]]
SCRIPTS = ["ppo_clip.py", "ppo_kl_adaptive.py", "ppo_continuous.py", "ppo_atari.py"]
# The lines that open a part's summary, in each language: (key points, flashcards).
SUMMARY = {"walkthrough.md": ("Key points", "Flashcards"), "walkthrough.zh-CN.md": ("要点", "闪卡")}
OPTION = r"- [(（][a-d][)）] "  # a multiple-choice option: "- (a) ...", or with full-width brackets


def snippets(doc):
    """(code, expected output) pairs: each python block and the text block right after it."""
    blocks = re.findall(r"```(python|text)\n(.*?)```", open(doc).read(), re.S)
    pairs = [(code, out) for (kind, code), (next_kind, out) in zip(blocks, blocks[1:])
             if kind == "python" and next_kind == "text"]
    assert len(pairs) == sum(kind == "python" for kind, _ in blocks)  # no snippet without its output
    return pairs


def without_comments(code):
    """The code with every `#` comment cut (found by Python's tokenizer, so a `#` inside a string stays), trailing
    spaces dropped, and the lines left empty dropped: a translated comment may take more or fewer lines."""
    lines = code.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            lines[row - 1] = lines[row - 1][:col]
    return "\n".join(line.rstrip() for line in lines if line.strip())


def test_comments_are_cut_outside_strings_only():
    code = 'x = "a # b"  # why\n    # a line of its own\ny = 1  # 为什么\n'
    assert without_comments(code) == 'x = "a # b"\ny = 1'


def test_both_walkthroughs_hold_the_same_snippets():
    english, chinese = ([(without_comments(code), out) for code, out in snippets(doc)] for doc in DOCS)
    assert len(english) >= 12
    for i, (en, zh) in enumerate(zip(english, chinese)):
        assert en == zh, f"snippet {i + 1} differs:\n{en[0]}\n---\n{zh[0]}"
    assert len(english) == len(chinese)


# All snippets run in one process, each with its own fresh globals, so that torch is imported once, not once a
# snippet. What each prints is captured apart; a snippet that fails does not stop the others.
RUNNER = r"""
import contextlib, io, json, sys, traceback
results = []
for code in json.load(sys.stdin):
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "<snippet>", "exec"), {"__name__": "__main__"})
        results.append([printed.getvalue(), None])
    except BaseException:
        results.append([printed.getvalue(), traceback.format_exc()])
sys.__stdout__.write(json.dumps(results))
"""
ENGLISH = snippets(DOCS[0])


@pytest.fixture(scope="module")
def printed():
    result = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps([code for code, _ in ENGLISH]), cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-800:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("index", range(len(ENGLISH)), ids=[f"{i + 1}:{code.splitlines()[0][:32]}"
                                                         for i, (code, _) in enumerate(ENGLISH)])
def test_snippet_prints_what_the_text_says(index, printed):
    out, error = printed[index]
    assert error is None, error[-800:]
    assert out == ENGLISH[index][1]


def test_the_typo_snippet_shows_which_exponent_is_right():
    """Eq. (10)-(11) as printed end with the exponent T - t + 1; a snippet sums eq. (11) by hand with both
    exponents beside compute_gae, and the corrected one, T - t - 1, is the one that matches."""
    [(code, out)] = [(code, out) for code, out in ENGLISH if "compute_gae" in code and "T - t + 1" in code]
    rows = dict(line.split("[", 1) for line in out.splitlines())
    rows = {label.strip(): values for label, values in rows.items()}
    assert rows["compute_gae"] == rows["with T - t - 1"] != rows["with T - t + 1"]


def parts(doc):
    """{heading: text} of each ## part."""
    pieces = re.split(r"^## (.+)\n", open(doc).read(), flags=re.M)
    return dict(zip(pieces[1::2], pieces[2::2]))


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_every_part_asks_first_and_ends_with_key_points_and_flashcards(doc):
    """Each part: at least one question of 3-4 options whose answer follows folded in <details>, all before the
    key points; then three key points; then, to the end of the part, two or three flashcards, each a question
    folded over a one-line answer."""
    key_points, flashcards = SUMMARY[os.path.basename(doc)]
    assert len(parts(doc)) >= 7
    for heading, text in parts(doc).items():
        summary = re.search(rf"^\W*{key_points}\W*\n((?:- .*\n)+)\n\W*{flashcards}\W*\n(.*)", text, re.M | re.S)
        assert summary, f"{heading}: no key points followed by flashcards"
        assert len(summary[1].splitlines()) == 3, f"{heading}: {len(summary[1].splitlines())} key points"
        cards = re.findall(r"<details><summary>(.+?)</summary>\n(.*?)</details>", summary[2], re.S)
        assert 2 <= len(cards) <= 3, f"{heading}: {len(cards)} flashcards"
        assert re.fullmatch(r"\s*(?:<details><summary>.+?</summary>\n\n[^\n]+\n\n</details>\s*)+", summary[2]), \
            f"{heading}: the flashcards are not the end of the part, or an answer is not one line"
        questions = list(re.finditer(rf"(?:^{OPTION}.*\n(?:[ \t]+\S.*\n)*)+", text[:summary.start()], re.M))
        assert questions, f"{heading}: no multiple-choice question"
        for options in questions:
            assert 3 <= len(re.findall(rf"^{OPTION}", options[0], re.M)) <= 4, f"{heading}: {options[0]}"
            assert text[options.end():].lstrip().startswith("<details>"), f"{heading}: answer not folded: {options[0]}"


def test_the_front_page_links_both_walkthroughs_on_its_first_screen():
    first_screen = "".join(open(os.path.join(ROOT, "README.md")).readlines()[:12])
    assert "](docs/walkthrough.md)" in first_screen and "](docs/walkthrough.zh-CN.md)" in first_screen


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_every_function_named_exists(doc):
    text, source = open(doc).read(), "".join(open(os.path.join(ROOT, s)).read() for s in SCRIPTS)
    named = set(re.findall(r"`(?:[\w.]+\.)?(\w+)\(", text)) | set(re.findall(r"`\w+\.(\w+)`", text))
    named = {name for name in named if len(name) > 4}  # not the paper's symbols, such as `r_t(theta)`
    named |= set(re.findall(r"`([a-z]+(?:_[a-z0-9]+)+)`", text))  # bare snake_case names: `compute_gae`
    assert {"compute_gae", "clipped_surrogate_loss", "update_beta", "logprob_entropy"} <= named
    for name in named:
        assert re.search(rf"def {name}\(|class {name}\b", source), name
