"""`python -m virtmig.lab up|down|status`: the embedded lab from the shell."""

from __future__ import annotations

import argparse
import sys

from filelock import FileLock, Timeout

from virtmig.lab import lifecycle
from virtmig.lab.topology import LAB_LOCK, SSH_CONFIG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m virtmig.lab", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--wait", type=float, default=600.0, metavar="SECONDS",
                        help="how long to wait for a pytest session using the lab (default 600)")
    args = parser.parse_args(argv)
    if args.action in ("up", "down"):
        try:
            with FileLock(str(LAB_LOCK), timeout=args.wait):
                return _change(args.action)
        except Timeout:
            print(f"the lab is in use (lock {LAB_LOCK} held for over {args.wait} s)", file=sys.stderr)
            return 2
    rows = lifecycle.status()
    for row in rows:
        daemons = " ".join(f"{name}={'up' if ok else 'DOWN'}" for name, ok in row.daemons.items()) or "-"
        print(f"{row.name:4} netns={'yes' if row.netns else 'no'} ssh={'up' if row.ssh else 'down'} {daemons}")
    return 0 if lifecycle.is_up() else 3


def _change(action: str) -> int:
    if action == "up":
        state = lifecycle.up()
        print(f"lab up in {state.started_s:.1f} s; reach it with: ssh -F {SSH_CONFIG} h1")
    else:
        lifecycle.down()
        print("lab down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
