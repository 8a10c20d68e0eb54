"""`python -m virtmig cleanup --src H --dst H [--nfs-server H] [--ssh-config F]`: undo what killed runs left.

The same cleanup a run does at its start (virtmig.cleanup.clean_dead_runs),
by hand, printing each step: every run journalled on these hosts whose
owning process is gone has its changes undone (exports file, mounts,
directories, guest).  Runs that still run, or ran on another machine, are
named and left alone.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from virtmig.cleanup import clean_dead_runs
from virtmig.option_values import ConfigError, check_host_name
from virtmig.sshhost import SshHost


def _host_name(value: str) -> str:
    try:
        return check_host_name(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m virtmig", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cleanup = sub.add_parser("cleanup", help="undo what runs that were killed left on the hosts")
    cleanup.add_argument("--src", required=True, type=_host_name, metavar="HOST")
    cleanup.add_argument("--dst", required=True, type=_host_name, metavar="HOST")
    cleanup.add_argument("--nfs-server", type=_host_name, metavar="HOST", default=None)
    cleanup.add_argument("--ssh-config", type=Path, metavar="FILE", default=None)
    args = parser.parse_args(argv)
    names = [args.src, args.dst] + ([args.nfs_server] if args.nfs_server else [])
    with contextlib.ExitStack() as stack:
        hosts = [stack.enter_context(SshHost(name, args.ssh_config)) for name in names]
        done = clean_dead_runs(hosts, say=lambda line: print(line, flush=True))
    if not done:
        print(f"nothing to clean on {', '.join(names)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
