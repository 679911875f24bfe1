"""`kubetune`: run the operator, generate the CRDs, or run a TuningJob locally.

    kubetune crds [--out DIR]          write the CRDs (default: crds/ and charts/kubetune/crds/)
    kubetune operator                  run the operator (settings from KUBETUNE_* env vars); the default
    kubetune run -f manifests.yaml     run TuningJobs on this machine, without a cluster
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_CRD_FOLDERS = (Path("crds"), Path("charts/kubetune/crds"))


def _crds(args: argparse.Namespace) -> int:
    from kubetune.crdgen import write_crds

    folders = [Path(args.out)] if args.out else list(DEFAULT_CRD_FOLDERS)
    for path in write_crds(*folders):
        print(f"wrote {path}")
    return 0


def _operator(args: argparse.Namespace) -> int:
    from kubetune.handlers.main import run_operator

    return run_operator(verbose=args.verbose)


def _run(args: argparse.Namespace) -> int:
    from kubetune.local.main import run_local

    return run_local(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    crds = sub.add_parser("crds", help="write the CustomResourceDefinitions generated from the API models")
    crds.add_argument("--out", help="folder to write to (default: crds/ and charts/kubetune/crds/)")
    crds.set_defaults(func=_crds)

    op = sub.add_parser("operator", help="run the operator against the current kubeconfig or in-cluster")
    op.add_argument("--verbose", action="store_true", help="debug logging")
    op.set_defaults(func=_operator)

    run = sub.add_parser("run", help="run TuningJobs from manifests on this machine")
    try:
        from kubetune.local.main import add_arguments
    except ImportError:  # the local mode is optional in the operator image
        pass
    else:
        add_arguments(run)
    run.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The operator image runs `python -m kubetune` or `kubetune` with no arguments.
    args = build_parser().parse_args(argv or ["operator"])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
