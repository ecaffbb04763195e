"""The documentation's Python snippets run as written (offline, on the tiny SAM they build): the README's
`python` blocks and those of docs/*.md, in that order; and its links lead to pages that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))


def test_readme_python_snippets_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the snippets save folders into the working directory
    pages = [README, *DOCS]
    code = "\n".join(
        block for page in pages for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    )
    assert "SamAdapterModel.from_pretrained" in code and "get_peft_model" in code
    namespace: dict = {}
    exec(compile(code, "README.md + docs/*.md", "exec"), namespace)
    assert namespace["native"].config.use_depth_branch
    assert (tmp_path / "msa-adapter" / "adapter_model.safetensors").is_file()
    # the data snippets: a training batch whose clicks land on the target, and a 5-D volume batch
    batch = namespace["batch"]
    assert batch["pixel_values"].shape == (8, 3, 64, 64) and batch["input_boxes"].shape == (8, 1, 4)
    for mask, points in zip(batch["labels"][:, 0], batch["input_points"][:, 0, 0].long(), strict=True):
        assert mask[points[1], points[0]] == 1
    assert namespace["volume_batch"]["pixel_values"].shape == (2, 3, 4, 64, 64)


def test_readme_parameter_table_is_the_computed_one():
    from msa_hf.modeling.parameter_report import parameter_table_markdown

    # Regenerate with `msa-hf params` when the adapters change.
    assert parameter_table_markdown() in (REPO / "docs" / "benchmarks.md").read_text()


def relative_links(page: Path) -> list[str]:
    """The link targets of a Markdown page that point into the repository (no scheme, anchors dropped)."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    return [target for target in targets if "://" not in target and not target.startswith("mailto:")]


def test_documentation_links_resolve():
    # pages move (a section becomes a page of its own); a link left behind is a dead end for a reader
    pages = [README, *DOCS]
    assert relative_links(README), "no link found in the README: the link pattern no longer matches"
    dead = [f"{page.name}: {target}" for page in pages for target in relative_links(page)
            if not (page.parent / target).exists()]  # fmt: skip
    assert not dead, f"links to files that do not exist: {dead}"


def test_every_documentation_page_is_listed_in_the_readme():
    listed = relative_links(README)
    assert [page.name for page in DOCS if f"docs/{page.name}" not in listed] == []
