"""What a release carries besides the code: its licence, its changelog, and a README whose
command table names every command the program has."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from .deploy import REPO


def test_the_licence_is_mit_and_the_package_says_so() -> None:
    licence = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License\n")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in licence
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]


def test_the_changelog_has_an_unreleased_section_above_the_releases() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", changelog, re.MULTILINE)
    assert headings[0] == "[Unreleased]", headings
    for release in headings[1:]:  # Keep a Changelog: "[1.2.3] - 2026-12-31"
        assert re.fullmatch(r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", release), release


def test_the_readme_command_table_names_every_command() -> None:
    usage = subprocess.run([sys.executable, "-m", "replicator", "--help"], capture_output=True,
                           text=True, timeout=60, check=True).stdout
    commands = re.search(r"\{([\w,-]+)\}", usage)
    assert commands, usage
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = {m.group(1) for m in re.finditer(r"^\| `replicator ([\w-]+)", readme, re.MULTILINE)}
    assert table == set(commands.group(1).split(","))
