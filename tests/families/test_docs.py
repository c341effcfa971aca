"""docs/families.md is the family table `hone models --markdown` generates from the tested registry."""

import subprocess
import sys
from pathlib import Path

from hone.models.families import FAMILIES, family_table

DOCS = Path(__file__).parents[2] / "docs" / "families.md"


def test_docs_families_md_is_the_generated_table():
    assert DOCS.read_text() == family_table(), "regenerate it: hone models --markdown > docs/families.md"
    for name in FAMILIES:
        assert f"| {name} |" in DOCS.read_text()


def test_hone_models_lists_every_family_and_how_to_load_one():
    out = subprocess.run([sys.executable, "-m", "hone", "models"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in FAMILIES:
        assert f"data.chat_template={FAMILIES[name].template}" in out.stdout
    assert ".gguf" in out.stdout and "hub id" in out.stdout and "directory" in out.stdout
