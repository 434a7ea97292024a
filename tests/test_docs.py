"""The documentation: the MkDocs site builds with --strict (its command-line page generated from the parsers), and
README stays a short front page."""

import importlib.util
import os
import subprocess
import sys

import pytest

from .conftest import ROOT


def test_readme_is_short_and_says_how_to_use_it_as_a_template_early():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300
    assert any(line.startswith("## Use it as a template") for line in lines[:150])


def test_the_command_line_reference_has_every_subcommands_help():
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        import cli_reference
    finally:
        sys.path.pop(0)
    from lr_lightning.core.main import commands

    page = cli_reference.on_page_markdown((ROOT / "docs/reference/cli.md").read_text())
    assert cli_reference.MARKER not in page
    for name in commands():
        assert f"## lr-lightning {name}\n" in page and f"usage: lr-lightning {name}" in page, name


@pytest.mark.slow  # ~15 s
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None
                    or importlib.util.find_spec("mkdocstrings") is None,
                    reason="needs the docs extra: pip install -e '.[docs]'")
def test_the_site_builds_strict(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                            "-d", str(tmp_path / "site")], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "lr-lightning fit" in page and "--max_epochs" in page
