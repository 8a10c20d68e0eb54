"""`python -m virtmig.lab up [--hypervisors N | --site FILE] [--real-kernel]|down|status`: the lab from the shell.

`up --hypervisors N` raises the default lab with N hypervisors h1..hN (2-6,
default 2: the lab as it always was) and one NFS server.  Every `up` writes
the lab's Ansible inventory (virtmig.lab.inventory_file) and prints its path.
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
from virtmig.lab.topology import (
    DEFAULT_SITE,
    INVENTORY,
    LAB_LOCK,
    MAX_HYPERVISORS,
    MIN_HYPERVISORS,
    SSH_CONFIG,
    Site,
    with_hypervisors,
)


def hypervisor_count(text: str) -> int:
    """--hypervisors' value: a whole number MIN_HYPERVISORS..MAX_HYPERVISORS, else a usage error (exit 2).

    Checked while the command line is parsed, so a bad N never gets as far
    as the lab's lock, let alone `down`.
    """
    try:
        count = int(text)
        with_hypervisors(count)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a lab has {MIN_HYPERVISORS} to {MAX_HYPERVISORS} hypervisors") from None
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m virtmig.lab", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--wait", type=float, default=600.0, metavar="SECONDS",
                        help="how long to wait for a pytest session using the lab (default 600)")
    parser.add_argument("--site", type=Path, metavar="FILE",
                        help="with up: raise the lab as the site this TOML file describes (virtmig.lab.site)")
    parser.add_argument("--hypervisors", type=hypervisor_count, metavar="N",
                        help=f"with up: N hypervisors h1..hN ({MIN_HYPERVISORS}-{MAX_HYPERVISORS}, "
                             f"default {MIN_HYPERVISORS}) and one NFS server")
    parser.add_argument("--real-kernel", action="store_true",
                        help="with up: add the real-kernel VM host k1 (SELinux enforcing, kernel NFS)")
    args = parser.parse_args(argv)
    if args.site is not None and args.action != "up":
        parser.error("--site goes with up only")
    if args.hypervisors is not None and (args.action != "up" or args.site is not None):
        parser.error("--hypervisors goes with up only, without --site (a site file lists its own hypervisors)")
    if args.real_kernel and (args.action != "up" or args.site is not None
                             or args.hypervisors not in (None, MIN_HYPERVISORS)):
        parser.error("--real-kernel goes with up only, on the default site (two hypervisors)")
    chosen = DEFAULT_SITE if args.hypervisors is None else with_hypervisors(args.hypervisors)
    if args.site is not None:
        try:
            chosen = site.load(args.site)
        except site.SiteError as exc:
            parser.error(str(exc))
    if args.action in ("up", "down"):
        try:
            with FileLock(str(LAB_LOCK), timeout=args.wait):
                return _change(args.action, chosen, real_kernel=args.real_kernel, site_file=args.site is not None)
        except Timeout:
            print(f"the lab is in use (lock {LAB_LOCK} held for over {args.wait} s)", file=sys.stderr)
            return 2
    rows = lifecycle.status()
    for row in rows:
        daemons = " ".join(f"{name}={'up' if ok else 'DOWN'}" for name, ok in row.daemons.items()) or "-"
        print(f"{row.name:4} netns={'yes' if row.netns else 'no'} ssh={'up' if row.ssh else 'down'} {daemons}")
    if realkernel.RealKernelState.load() is not None:
        print(f"{realkernel.K1.name:4} real kernel: ssh={'up' if realkernel.is_up() else 'DOWN'}")
    return 0 if lifecycle.is_up(lifecycle.site_up() or DEFAULT_SITE) else 3


def _change(action: str, chosen: Site, *, real_kernel: bool = False, site_file: bool = False) -> int:
    if action == "up":
        state = lifecycle.up(chosen)
        src = chosen.hypervisors[0].name
        print(f"lab up in {state.started_s:.1f} s; reach it with: ssh -F {SSH_CONFIG} {src}")
        print(f"hypervisors {' '.join(n.name for n in chosen.hypervisors)}, NFS server {chosen.nfs.name}; "
              f"Ansible inventory: {INVENTORY}")
        if real_kernel:
            try:
                k1 = realkernel.up()
            except ImageUnavailable as exc:
                print(f"no real-kernel node: {exc}", file=sys.stderr)
                return 2
            print(realkernel.timings(k1))
        if site_file:
            options = site.certify_options(chosen, chosen.ssh_config or SSH_CONFIG)
            print("certify it as its users would: pytest suites/live " + " ".join(options))
    else:
        lifecycle.down()
        print("lab down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
