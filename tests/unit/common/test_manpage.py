"""Man pages: generated from the parsers and config schemas, current, and rendering cleanly."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from monitor_agentd.config import AgentConfig
from monitord.config import MonitordConfig
from monitoring_common.config_loader import field_docs
from monitoring_testsupport import REPO

MAN = REPO / "packaging" / "man"
PAGES = ["monitord.8", "monitor-agentd.8", "monitorctl.1", "monitor-analyzer.1", "monitord.yaml.5", "agent.yaml.5"]


def render(page: str) -> tuple[str, str]:
    env = dict(os.environ, MANWIDTH="100", LC_ALL="C")
    out = subprocess.run(
        ["man", "--warnings", "-l", str(MAN / page)], capture_output=True, text=True, env=env, check=True
    )
    return re.sub(".\b", "", out.stdout), out.stderr  # without bold/underline overstrikes


def test_committed_pages_match_the_code() -> None:
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts/gen-man.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_warnings(page: str) -> None:
    text, warnings = render(page)
    assert warnings == ""
    name = page.rsplit(".", 1)[0]
    assert re.search(rf"^{re.escape(name.upper())}\({page.rsplit('.', 1)[1]}\)", text, re.M), text[:300]
    for heading in ("NAME", "DESCRIPTION", "SEE ALSO"):
        assert f"\n{heading}\n" in text


@pytest.mark.parametrize(("page", "schema"), [("monitord.yaml.5", MonitordConfig), ("agent.yaml.5", AgentConfig)])
def test_config_pages_document_every_key(page: str, schema: type) -> None:
    text = " ".join(render(page)[0].split())  # undo line filling
    missing = [key for key, *_ in field_docs(schema) if key not in text.replace("- ", "-")]
    assert missing == []


def test_command_pages_list_every_option() -> None:
    from monitor_agentd.cli import parser as agent_parser
    from monitord.cli import parser as monitord_parser

    for page, parser in (("monitord.8", monitord_parser()), ("monitor-agentd.8", agent_parser())):
        text = render(page)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in text, f"{page}: {flag}"
