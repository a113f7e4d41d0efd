"""The README's troubleshooting section quotes messages the service really sends."""

from __future__ import annotations

import re

from tests.support.servers import REPO


def test_readme_troubleshooting_quotes_what_the_service_says():
    """Every quoted message in the README's troubleshooting section is in the code."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    quotes = [q for bold in re.findall(r"\*\*(.+?)\*\*", section) for q in re.findall(r'"([^"]+)"', bold)]
    assert quotes
    sources = "".join(p.read_text() for p in (REPO / "app").rglob("*.py"))
    sources += "".join(p.read_text() for p in (REPO / "bark_core").rglob("*.py"))
    for quote in quotes:
        fragments = [f.strip() for f in quote.split("...") if f.strip()]
        assert all(f in sources for f in fragments), quote
