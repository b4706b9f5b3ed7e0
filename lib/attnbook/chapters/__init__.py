"""The book's chapters: one package per notebook (``config`` · ``pipeline`` · ``figures`` · ``claims``),
whose torch-free ``config`` module exposes ``CHAPTER`` (a :class:`Chapter`).

This registry is the single source of truth for which notebooks exist, their profiles and the
parameters their papermill cell accepts; the CLI, the book builder and the tests enumerate it.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from attnbook.config import (
    COMMON_PARAMETERS,
    ChapterConfig,
    ConfigError,
    check_injected,
    check_requirements,
    kernel_namespace,
    resolve,
)

# notebook stem → the torch-free module defining CHAPTER (imported lazily).
_MODULES = {
    "00_testbed": "attnbook.chapters.testbed.config",
    "01_eat": "attnbook.chapters.eat.config",
    "02_sharpen_focus": "attnbook.chapters.sharpen_focus.config",
    "03_region_grouping": "attnbook.chapters.region_grouping.config",
    "04_bla": "attnbook.chapters.bla.config",
    "05_brnpa": "attnbook.chapters.brnpa.config",
    "06_compare": "attnbook.chapters.compare.config",
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
    summary: str = ""  # the paper's claim in one line (the book's table of chapters)
    paper_url: str = ""  # where a reader finds the paper (arXiv abstract page, DOI): the book links it
    code_url: str = ""  # the authors' code, if they published any

    @property
    def notebook_parameters(self) -> tuple[str, ...]:
        """Names the notebook's ``parameters`` cell declares: the common ones, then the chapter's."""
        return COMMON_PARAMETERS + self.parameters

    def resolve(self, profile: str = "cpu", seed: int | None = None, **overrides: Any) -> ChapterConfig:
        """Validated config for a profile plus overrides (no requirement checks)."""
        return resolve(self.profiles, profile, {"seed": seed, **overrides}, allowed=("seed",) + self.parameters)

    def configure(self, profile: str = "cpu", seed: int | None = None, *, namespace: Mapping[str, Any] | None = None,
                  **overrides: Any) -> ChapterConfig:
        """What a notebook calls first: validated config, then stop early if the profile can't run here.

        Names papermill injected (``papermill nb.ipynb out.ipynb -p epoch 3``: papermill only warns) that
        are not :attr:`notebook_parameters` are refused with the list of valid names. They are read from
        ``namespace`` (a notebook passes ``namespace=globals()``); by default from the IPython kernel this
        runs in, if any (see :func:`attnbook.config.check_injected`)."""
        namespace = kernel_namespace() if namespace is None else namespace
        if namespace is not None:
            check_injected(namespace, self.notebook_parameters, f"{self.notebook}.ipynb")
        config = self.resolve(profile, seed, **overrides)
        check_requirements(config)
        return config


@dataclass(frozen=True)
class PlannedChapter:
    """A chapter of the book that is not written yet: listed in the table of chapters, without a link."""

    notebook: str
    title: str
    paper: str
    summary: str


PLANNED: tuple[PlannedChapter, ...] = ()


def notebook_names() -> tuple[str, ...]:
    """The stems of every written chapter's notebook, in book order."""
    return tuple(_MODULES)


def contents() -> list[Chapter | PlannedChapter]:
    """Every chapter of the book in order, written (:class:`Chapter`) or planned (:class:`PlannedChapter`)."""
    written: list[Chapter | PlannedChapter] = [get_chapter(name) for name in notebook_names()]
    return sorted(written + [p for p in PLANNED if p.notebook not in _MODULES], key=lambda c: c.notebook)


def contents_markdown() -> str:
    """The book's table of chapters (the intro page's), generated from the registry."""
    rows = ["| chapter | paper | the claim in one line |", "|---|---|---|"]
    for chapter in contents():
        label = f"{int(chapter.notebook[:2])}. {chapter.title}"
        paper = chapter.paper
        if isinstance(chapter, Chapter):
            label = f"[{label}](../nbs/{chapter.notebook}.ipynb)"
            if chapter.paper_url:
                paper = f"[{paper}]({chapter.paper_url})"
            if chapter.code_url:
                paper += f" · [authors' code]({chapter.code_url})"
        rows.append(f"| {label} | {paper} | {chapter.summary} |")
    return "\n".join(rows)


def get_chapter(notebook: str) -> Chapter:
    """The chapter of a notebook, by stem (``00_testbed``) or path (``nbs/00_testbed.ipynb``)."""
    stem = notebook.rsplit("/", 1)[-1].removesuffix(".ipynb")
    if stem not in _MODULES:
        raise ConfigError(f"no chapter named {stem!r}; chapters: {', '.join(_MODULES)}")
    return importlib.import_module(_MODULES[stem]).CHAPTER
