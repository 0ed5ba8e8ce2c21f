"""Scenario files written for a test, and the mistakes loading one reports."""

from __future__ import annotations

import textwrap

import pytest

from mpa_protocol.schema import ConfigError
from mpa_lab.experiment.scenario import load_scenario


def write(tmp_path, text: str, name: str = "scenario.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def errors_of(tmp_path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_scenario(write(tmp_path, text))
    return caught.value.lines()
