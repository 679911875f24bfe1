"""`kubetune`: run the operator, generate the CRDs, or run a TuningJob locally.

    kubetune operator                  run the operator (settings from KUBETUNE_* env vars)
    kubetune run -f manifests.yaml     run TuningJobs on this machine, without a cluster
    kubetune crds [--out DIR]          write the CRDs (default: crds/ and charts/kubetune/crds/)
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from kubetune.usererror import UserError

DEFAULT_CRD_FOLDERS = (Path("crds"), Path("charts/kubetune/crds"))
USAGE_ERROR = 2  # argparse's exit code for a bad command line


def package_version() -> str:
    """The installed distribution's version (pyproject.toml), or the package's own when run from a source tree."""
    try:
        return version("kubetune")
    except PackageNotFoundError:
        from kubetune import __version__

        return __version__


def _crds(args: argparse.Namespace) -> int:
    from kubetune.crdgen import write_crds

    folders = [Path(args.out)] if args.out else list(DEFAULT_CRD_FOLDERS)
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise UserError(f"--out {folder} is a file: --out takes a folder (created when missing); "
                            "each CRD is written to its own file in it")
    try:
        written = write_crds(*folders)
    except OSError as exc:
        where = exc.filename or ", ".join(map(str, folders))
        raise UserError(f"cannot write the CRDs to {where}: {exc.strerror or exc}: --out takes a folder "
                        "(created when missing) that you can write to") from None
    for path in written:
        print(f"wrote {path}")
    return 0


def _operator(args: argparse.Namespace) -> int:
    from kubetune.handlers.main import run_operator
    from kubetune.preflight import check_cluster_config, check_port_free
    from kubetune.settings import Settings

    settings = Settings.from_env()
    check_cluster_config()
    # kopf serves /healthz from inside its event loop, where a taken port is a traceback.
    check_port_free(settings.health_port, "the liveness endpoint /healthz", "HEALTH_PORT")
    return run_operator(verbose=args.verbose)


def _run(args: argparse.Namespace) -> int:
    from kubetune.local.command import run_local

    return run_local(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"kubetune {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    op = sub.add_parser("operator", help="run the operator against the current kubeconfig or in-cluster")
    op.add_argument("--verbose", action="store_true", help="debug logging")
    op.set_defaults(func=_operator)

    run = sub.add_parser("run", help="run TuningJobs from manifests on this machine")
    try:
        from kubetune.local.command import add_arguments
    except ImportError:  # the local mode is optional in the operator image
        pass
    else:
        add_arguments(run)
    run.set_defaults(func=_run)

    crds = sub.add_parser("crds", help="write the CustomResourceDefinitions generated from the API models")
    crds.add_argument("--out", help="folder to write to (default: crds/ and charts/kubetune/crds/)")
    crds.set_defaults(func=_crds)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        # Like kubectl: no command is a usage error, never a silent start of the operator.
        parser.print_help(sys.stderr)
        return USAGE_ERROR
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"kubetune {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 128 + 2  # as a shell reports death by SIGINT
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly, as a shell tool does, and keep
        # Python from reporting the failed flush of stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
