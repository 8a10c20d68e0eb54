"""`python -m virtmig.lab up|down|status`: the embedded lab from the shell."""

from __future__ import annotations

import argparse
import sys

from virtmig.lab import lifecycle
from virtmig.lab.topology import SSH_CONFIG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m virtmig.lab", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    if args.action == "up":
        state = lifecycle.up()
        print(f"lab up in {state.started_s:.1f} s; reach it with: ssh -F {SSH_CONFIG} h1")
        return 0
    if args.action == "down":
        lifecycle.down()
        print("lab down")
        return 0
    rows = lifecycle.status()
    for row in rows:
        daemons = " ".join(f"{name}={'up' if ok else 'DOWN'}" for name, ok in row.daemons.items()) or "-"
        print(f"{row.name:4} netns={'yes' if row.netns else 'no'} ssh={'up' if row.ssh else 'down'} {daemons}")
    return 0 if lifecycle.is_up() else 3


if __name__ == "__main__":
    sys.exit(main())
