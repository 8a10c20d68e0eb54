"""`python -m virtmig.lab up [--site FILE] [--real-kernel]|down|status`: the embedded lab from the shell.

`up --site FILE` raises the lab as another site (virtmig.lab.site) and prints
the options that certify its pair as a user would.  `up --real-kernel` adds
the real-kernel VM host k1 (virtmig.lab.realkernel: SELinux enforcing, kernel
NFS), building its image first if none is cached, and prints the timings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from filelock import FileLock, Timeout

from virtmig.lab import lifecycle, realkernel, site
from virtmig.lab.realkernel_image import ImageUnavailable
from virtmig.lab.topology import DEFAULT_SITE, LAB_LOCK, SSH_CONFIG, Site


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m virtmig.lab", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--wait", type=float, default=600.0, metavar="SECONDS",
                        help="how long to wait for a pytest session using the lab (default 600)")
    parser.add_argument("--site", type=Path, metavar="FILE",
                        help="with up: raise the lab as the site this TOML file describes (virtmig.lab.site)")
    parser.add_argument("--real-kernel", action="store_true",
                        help="with up: add the real-kernel VM host k1 (SELinux enforcing, kernel NFS)")
    args = parser.parse_args(argv)
    if args.site is not None and args.action != "up":
        parser.error("--site goes with up only")
    if args.real_kernel and (args.action != "up" or args.site is not None):
        parser.error("--real-kernel goes with up only, on the default site")
    chosen = DEFAULT_SITE
    if args.site is not None:
        try:
            chosen = site.load(args.site)
        except site.SiteError as exc:
            parser.error(str(exc))
    if args.action in ("up", "down"):
        try:
            with FileLock(str(LAB_LOCK), timeout=args.wait):
                return _change(args.action, chosen, real_kernel=args.real_kernel)
        except Timeout:
            print(f"the lab is in use (lock {LAB_LOCK} held for over {args.wait} s)", file=sys.stderr)
            return 2
    rows = lifecycle.status()
    for row in rows:
        daemons = " ".join(f"{name}={'up' if ok else 'DOWN'}" for name, ok in row.daemons.items()) or "-"
        print(f"{row.name:4} netns={'yes' if row.netns else 'no'} ssh={'up' if row.ssh else 'down'} {daemons}")
    if realkernel.RealKernelState.load() is not None:
        print(f"{realkernel.K1.name:4} real kernel: ssh={'up' if realkernel.is_up() else 'DOWN'}")
    return 0 if lifecycle.is_up() else 3


def _change(action: str, chosen: Site, *, real_kernel: bool = False) -> int:
    if action == "up":
        state = lifecycle.up(chosen)
        src = chosen.hypervisors[0].name
        print(f"lab up in {state.started_s:.1f} s; reach it with: ssh -F {SSH_CONFIG} {src}")
        if real_kernel:
            try:
                k1 = realkernel.up()
            except ImageUnavailable as exc:
                print(f"no real-kernel node: {exc}", file=sys.stderr)
                return 2
            print(realkernel.timings(k1))
        if chosen != DEFAULT_SITE:
            options = site.certify_options(chosen, chosen.ssh_config or SSH_CONFIG)
            print("certify it as its users would: pytest suites/live " + " ".join(options))
    else:
        lifecycle.down()
        print("lab down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
