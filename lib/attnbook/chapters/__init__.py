"""The book's chapters: one module per notebook, each exposing ``CHAPTER`` (a :class:`Chapter`).

This registry is the single source of truth for which notebooks exist, their profiles and the
parameters their papermill cell accepts; the CLI, the book builder and the tests enumerate it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from attnbook.config import COMMON_PARAMETERS, ChapterConfig, ConfigError, check_requirements, resolve

# notebook stem → module defining CHAPTER (imported lazily: chapters pull in torch).
_MODULES = {
    "00_testbed": "attnbook.chapters.testbed",
    "04_bla": "attnbook.chapters.bla",
    "05_brnpa": "attnbook.chapters.brnpa",
}


@dataclass(frozen=True)
class Chapter:
    """A notebook of the book and the configs its profiles stand for."""

    notebook: str
    title: str
    paper: str
    profiles: Mapping[str, ChapterConfig]
    parameters: tuple[str, ...]  # chapter fields the parameters cell may override
    metrics: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # key → valid range (tests)

    @property
    def notebook_parameters(self) -> tuple[str, ...]:
        return COMMON_PARAMETERS + self.parameters

    def resolve(self, profile: str = "cpu", seed: int | None = None, **overrides: Any) -> ChapterConfig:
        """Validated config for a profile plus overrides (no requirement checks)."""
        return resolve(self.profiles, profile, {"seed": seed, **overrides}, allowed=("seed",) + self.parameters)

    def configure(self, profile: str = "cpu", seed: int | None = None, **overrides: Any) -> ChapterConfig:
        """What a notebook calls first: validated config, then stop early if the profile can't run here."""
        config = self.resolve(profile, seed, **overrides)
        check_requirements(config)
        return config


def notebook_names() -> tuple[str, ...]:
    return tuple(_MODULES)


def get_chapter(notebook: str) -> Chapter:
    """The chapter of a notebook, by stem (``00_testbed``) or path (``nbs/00_testbed.ipynb``)."""
    stem = notebook.rsplit("/", 1)[-1].removesuffix(".ipynb")
    if stem not in _MODULES:
        raise ConfigError(f"no chapter named {stem!r}; chapters: {', '.join(_MODULES)}")
    return importlib.import_module(_MODULES[stem]).CHAPTER
