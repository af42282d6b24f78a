"""The README and docs/ link to each other's sections: every relative link must name a file and a heading that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but `-` and `_` dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path) -> set[str]:
    """Anchors of a Markdown file's headings (lines in code blocks are not headings: `#!/bin/bash`, `#SBATCH`)."""
    anchors, in_code = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            anchors.add(github_anchor(line.lstrip("#")))
    return anchors


def relative_links(path: Path) -> list[str]:
    return [link for link in LINK.findall(path.read_text(encoding="utf-8")) if not re.match(r"[a-z]+:", link)]


def test_github_anchor_matches_githubs_rules():
    assert github_anchor(" Over seeds at α = 1 and α = 0") == "over-seeds-at-α--1-and-α--0"
    assert github_anchor("Seed 0, and w/o L_logits") == "seed-0-and-wo-l_logits"
    assert github_anchor("The former default (float32, the checkpoint's dropouts)") == (
        "the-former-default-float32-the-checkpoints-dropouts"
    )


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_names_an_existing_file_and_heading(document):
    broken = []
    for link in relative_links(document):
        target, _, anchor = link.partition("#")
        target_path = (document.parent / target).resolve() if target else document
        if not target_path.exists():
            broken.append(f"{link} (no file {target})")
        elif anchor and target_path.suffix == ".md" and anchor not in headings(target_path):
            broken.append(f"{link} (no heading #{anchor} in {target_path.name})")
    assert not broken, f"{document.name}: broken links: {broken}"
