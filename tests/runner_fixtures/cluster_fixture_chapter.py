"""A tiny chapter for the cluster runner tests: its notebook fails or waits when the test says so.

The switches are files in ``$ATTNBOOK_FIXTURE_GATE`` (not parameters, so the run ids — and the results
folder's layout — are those of plain runs): ``fail-<seed>`` makes run ``seed`` raise, ``wait-<seed>``
holds it (at most a minute) until the file is gone; every run writes ``started-<seed>-<pid>`` first."""
from dataclasses import dataclass

from attnbook.chapters import Chapter
from attnbook.config import ChapterConfig


@dataclass(frozen=True)
class ClusterFixtureConfig(ChapterConfig):
    """Only the common parameters (profile, seed)."""


CHAPTER = Chapter(notebook="98_cluster_fixture", title="Cluster fixture", paper="none",
                  profiles={"smoke": ClusterFixtureConfig(profile="smoke"),
                            "gpu": ClusterFixtureConfig(profile="gpu", needs_gpu=True)},
                  parameters=())
