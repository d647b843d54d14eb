"""The documentation's code runs as written; oracle: the documents themselves.

Every ```python block of README.md runs on its own (the README's examples are
independent).  The guides in docs/ build one example step by step, so each guide's blocks
run in order in one namespace, as the script a reader would paste.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = ("docs/write_a_cell.md", "docs/training_api.md")


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


README_BLOCKS = python_blocks(ROOT / "README.md")


def test_documents_have_examples_and_the_readme_links_the_guides():
    assert len(README_BLOCKS) >= 2
    readme = (ROOT / "README.md").read_text()
    for guide in GUIDES:
        assert len(python_blocks(ROOT / guide)) >= 3, guide
        assert f"]({guide})" in readme, f"README.md does not link {guide}"


@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_readme_block_runs(index, capsys):
    exec(compile(README_BLOCKS[index], f"README.md block {index}", "exec"), {})
    if "print(" in README_BLOCKS[index]:
        assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_runs_as_one_script(guide, capsys):
    namespace = {"__name__": "__main__"}
    for index, block in enumerate(python_blocks(ROOT / guide)):
        exec(compile(block, f"{guide} block {index}", "exec"), namespace)
        if "print(" in block:
            assert capsys.readouterr().out.strip(), f"{guide} block {index} printed nothing"
