"""The README's deviations section is generated from tests/deviations.py; this keeps them equal."""

import os

import deviations

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
BEGIN = deviations.README_BEGIN
END = deviations.README_END


def test_readme_deviations_match_the_registry():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert BEGIN in text and END in text
    section = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert section == deviations.markdown(), (
        "README deviations are stale: run `python tests/deviations.py --write-readme`")
