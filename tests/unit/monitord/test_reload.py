"""A reload takes over what may change live and keeps (and names) what needs a restart."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from monitord.config import MonitordConfig
from monitord.reload import effective_config
from monitoring_common.sections import LoggingSection


def test_live_settings_change_and_restart_only_ones_are_kept_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    old = MonitordConfig()
    new = dataclasses.replace(
        old,
        server=dataclasses.replace(old.server, listen="127.0.0.1:1", log_each_record=not old.server.log_each_record),
        kafka=dataclasses.replace(old.kafka, bootstrap_servers="elsewhere:9092"),
        logging=LoggingSection(level="debug"),
    )
    with caplog.at_level(logging.WARNING, logger="monitord.reload"):
        effective = effective_config(old, new)
    assert effective.server.listen == old.server.listen
    assert effective.kafka == old.kafka
    assert effective.server.log_each_record == new.server.log_each_record
    assert effective.logging.level == "debug"
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        "Reload: server.listen changed; that takes effect only after a restart",
        "Reload: kafka changed; that takes effect only after a restart",
    ]


def test_an_unchanged_file_warns_about_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="monitord.reload"):
        assert effective_config(MonitordConfig(), MonitordConfig()) == MonitordConfig()
    assert caplog.records == []
