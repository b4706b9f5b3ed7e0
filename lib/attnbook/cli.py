"""``attnbook`` command line: run notebooks in batches, tabulate results, build the book, manage data.

Exit codes: 0 success, 1 some runs failed, 2 bad input (one line says what to fix).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from attnbook.config import PROFILE_HELP, PROFILES
from attnbook.data.commands import register_cli


def _add_run(sub: argparse._SubParsersAction) -> None:
    from attnbook.runs import DEFAULT_THREADS

    p = sub.add_parser("run", help="execute a notebook headless, once or over a parameter grid",
                       description="Each run lands in results/<notebook>/<run-id>/ (executed notebook, params.json, "
                                   "metrics.json, figures). Completed runs are skipped unless --force; complete runs "
                                   "of another code version (stale) are rerun unless --keep-stale.")
    p.add_argument("notebook", help="path of the notebook, e.g. nbs/00_testbed.ipynb")
    p.add_argument("--profile", default="cpu", help="; ".join(f"{k}: {v}" for k, v in PROFILE_HELP.items()))
    p.add_argument("--grid", action="append", default=[], metavar="NAME=VALUES",
                   help="a grid axis: seed=0..9 (inclusive range) or method=bl,bla (list); repeatable")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="a fixed parameter")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs executed at once (default 1); with --cluster, runs handed to the cluster at once "
                        "(default all: the workers decide how many execute)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of each run, whatever --jobs is (default $ATTNBOOK_THREADS or "
                        f"{DEFAULT_THREADS}; another count can change the numbers, so it joins the run id)")
    p.add_argument("--force", action="store_true",
                   help="rerun completed runs, retraining from scratch (their checkpoints are deleted)")
    p.add_argument("--keep-stale", action="store_true",
                   help="skip complete runs of another code version instead of rerunning them")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep a run's training checkpoints after it completes (default: deleted)")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per run")
    p.add_argument("--results", type=Path, default=None, help="results folder (default: results/ or $ATTNBOOK_RESULTS)")
    p.add_argument("--cluster", default=None, metavar="local:N|tcp://HOST:PORT|slurm",
                   help="execute the runs on a Dask cluster (pip install -e '.[cluster]'): a LocalCluster of N "
                        "worker processes, an existing scheduler, or SLURM jobs; results are written here as usual")
    p.add_argument("--cluster-opt", action="append", default=[], metavar="K=V[,K=V]",
                   help="cluster options: slurm cores=8,memory=32GB,gpus=1,queue=…,walltime=…,account=…,jobs=N; "
                        "local memory=…")
    p.add_argument("--checkpoints", type=Path, default=None, metavar="DIR",
                   help="with --cluster: training checkpoints under DIR/<notebook>/.checkpoints/, on a file system "
                        "every worker shares (default: the results folder on a local cluster)")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from attnbook import runner

    if args.profile not in PROFILES:
        raise runner.UsageError(f"unknown profile {args.profile!r}; valid profiles: {', '.join(PROFILES)}")
    if args.jobs is not None and args.jobs < 1:
        raise runner.UsageError(f"--jobs {args.jobs}: give at least 1")
    if args.cluster is None and (args.cluster_opt or args.checkpoints):
        raise runner.UsageError("--cluster-opt and --checkpoints go with --cluster (local runs keep checkpoints "
                                "in results/<notebook>/.checkpoints)")
    target = None
    if args.cluster is not None:
        from attnbook import runner_cluster

        target = runner_cluster.parse_cluster(args.cluster, args.cluster_opt)
    specs = runner.plan(args.notebook, profile=args.profile, grid=args.grid, params=args.param, results=args.results,
                        threads=args.threads)
    options = {"force": args.force, "keep_stale": args.keep_stale, "keep_checkpoints": args.keep_checkpoints,
               "timeout": args.timeout}
    if target is None:
        outcomes = runner.run_batch(specs, jobs=args.jobs or 1, **options)
    else:
        outcomes = runner_cluster.run_batch(specs, target, checkpoints=args.checkpoints, jobs=args.jobs, **options)
    print(tabulate(runner.summary_rows(outcomes), headers="keys", tablefmt="simple"))
    failed = [o for o in outcomes if o.status == "failed"]
    skipped = sum(o.status == "skipped" for o in outcomes)
    stale = sum(o.note == "stale → rerun" for o in outcomes)
    print(f"\n{len(outcomes) - len(failed)} ok ({skipped} skipped, {stale} stale → rerun), "
          f"{len(failed)} failed; results in {specs[0].run_dir.parent}")
    for o in failed:
        print(f"failed: {o.run_dir / 'notebook.ipynb'} — {o.error}")
    return 1 if failed else 0


def _add_results(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="print a notebook's runs as a table and export CSV")
    p.add_argument("notebook", help="notebook name or path, e.g. 04_bla or nbs/04_bla.ipynb")
    p.add_argument("--csv", type=Path, default=None, help="CSV path (default results/<notebook>/runs.csv)")
    p.add_argument("--by", default=None, help="aggregate over seeds grouping by these comma-separated columns, "
                                             "e.g. --by p.method (mean, sem, n)")
    p.add_argument("--results", type=Path, default=None)
    p.set_defaults(func=_cmd_results)


def _cmd_results(args: argparse.Namespace) -> int:
    from attnbook import collect, runner, runs

    stem = Path(args.notebook).stem
    root = args.results or runs.results_root()
    skipped: list[str] = []
    frame = collect.runs_frame(stem, root, skipped)
    if frame.empty:
        raise runner.UsageError(f"no complete runs of {stem} under {root}; run `attnbook run nbs/{stem}.ipynb` first")
    versions = collect.code_versions(frame)
    if args.by:
        frame = collect.aggregate(frame, [c.strip() for c in args.by.split(",")])
    csv = args.csv or root / stem / ("runs.csv" if not args.by else "runs_aggregated.csv")
    csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv)
    import pandas as pd

    with pd.option_context("display.max_columns", 30, "display.width", 200, "display.float_format", "{:.4g}".format):
        print(frame.to_string(index=bool(args.by)))
    if len(versions) > 1:
        print(f"\n{collect.mixed_versions_line(versions, aggregated=bool(args.by))}")
    if skipped:
        print(f"\nleft out (incomplete or invalid): {', '.join(skipped)}")
    print(f"\nCSV: {csv}")
    return 0


def _add_book(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("book", help="execute every chapter (default parameters) and build the Jupyter Book")
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--force", action="store_true", help="re-execute chapters that already have a complete run")
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="build folder (default book/_build)")
    p.set_defaults(func=_cmd_book)


def _cmd_book(args: argparse.Namespace) -> int:
    from attnbook import publish

    index, failed = publish.execute_and_build(profile=args.profile, jobs=args.jobs, force=args.force,
                                              results=args.results, out=args.out)
    print(f"\nThe book: {index}")
    if failed:
        print(f"{len(failed)} chapter(s) failed and show their error in the book: {', '.join(failed)}")
        return 1
    return 0


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the chapters, their profiles and parameters")
    p.set_defaults(func=_cmd_list)


def _cmd_list(args: argparse.Namespace) -> int:
    from attnbook.chapters import get_chapter, notebook_names

    for name in notebook_names():
        chapter = get_chapter(name)
        print(f"{name}: {chapter.title}\n  profiles: {', '.join(chapter.profiles)}"
              f"\n  parameters: {', '.join(chapter.notebook_parameters)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``attnbook`` parser with its subcommands: run, results, book, list and data."""
    parser = argparse.ArgumentParser(prog="attnbook", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_results(sub)
    _add_book(sub)
    _add_list(sub)
    register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``); returns the exit code, 2 on usage errors."""
    from attnbook.runner import UsageError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as err:
        print(f"attnbook: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnbook: interrupted; running runs were killed (run the command again to resume them)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
