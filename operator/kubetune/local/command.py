"""`kubetune run -f manifests.yaml`: the command's arguments, and its start.

Invalid manifests and missing input volumes are reported before anything runs; the runs
themselves are LocalRun's (pipeline.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kubetune.api import ExitCode
from kubetune.local.display import ProgressDisplay
from kubetune.local.manifests import ManifestError, load_manifests
from kubetune.local.pipeline import LocalRun
from kubetune.local.runner import RunInterrupted
from kubetune.local.workspace import DEFAULT_WORKDIR, Workspace, check_input_volumes, parse_volume
from kubetune.usererror import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", action="append", required=True, metavar="FILE",
                        help="manifests (multi-document YAML or JSON, as for kubectl apply): a file, a folder "
                             "(its .yaml, .yml and .json files in name order) or - for standard input; "
                             "repeat for several")
    parser.add_argument("-R", "--recursive", action="store_true",
                        help="read the folders given with -f and their sub-folders")
    parser.add_argument("--volume", action="append", type=parse_volume, default=[], metavar="CLAIM=PATH",
                        help="use folder PATH for PersistentVolumeClaim CLAIM "
                             "(default: WORKDIR/volumes/CLAIM); repeat for several claims")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR,
                        help=f"folder for logs, configs, checkpoints and default volumes (default: {DEFAULT_WORKDIR})")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the manifests and datasets, ask the trainer whether this machine can run "
                             "the job, and print the trainer config; do not train")
    parser.add_argument("--plain", action="store_true",
                        help="print progress as plain lines even on a terminal")
    parser.add_argument("--restart", action="store_true",
                        help="start each run over from step 0: delete its run folder (checkpoints and finished "
                             "model) first; without it the same manifest resumes, or only publishes a finished model")
    parser.add_argument("--processes", type=_positive, default=1, metavar="N",
                        help="training processes (torchrun; gloo on CPU, one GPU each with CUDA) for the "
                             "data-parallel code path a cluster runs with resources.gpus x nodes (default: 1)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes from 1 to 64")
    return value


def run_local(args: argparse.Namespace) -> int:
    try:
        manifests = load_manifests(args.filename, recursive=args.recursive)
    except ManifestError as exc:
        print("error: the manifests are invalid; nothing was run:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return ExitCode.PERMANENT
    workspace = Workspace(Path(args.workdir).expanduser().resolve(), dict(args.volume))
    problems = check_input_volumes(manifests, workspace)
    if problems:
        print("error: a volume is missing; nothing was run:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return ExitCode.PERMANENT
    display = ProgressDisplay(interactive=False if args.plain else None)
    for note in manifests.notes:
        display.message(f"note: {note}")
    run = LocalRun(manifests, workspace, display, dry_run=args.dry_run, restart=args.restart,
                   processes=args.processes)
    try:
        return run.run_all()
    except (KeyboardInterrupt, RunInterrupted) as exc:
        # Ctrl-C outside training (validation, between steps): nothing to resume, just stop.
        display.close()
        display.message(f"interrupted{': ' + str(exc) if str(exc) else ''}")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        raise  # the reader of our output went away (`| head`): the CLI ends quietly
    except OSError as exc:  # a folder or file of the run that cannot be made, written or started
        display.close()
        what = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
        raise UserError(f"{what}: the run needs to write under --workdir ({workspace.root}) and the output "
                        "volumes, and to start the trainer: check those paths and permissions") from None
