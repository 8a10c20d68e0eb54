"""The report's guest section: on which network, at which address, as what the test guest ran, and why.

A verdict is only as good as the guest it was reached with: a KVM pair
certified under TCG, or with a CPU model other than the site's, says less
than it seems to.  So the report shows what the run used and the reason for
each choice (virtmig.guest.platform gives them), from the run's own record.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any, Final

from virtmig.report import DASH

TITLE: Final = "Guest used"

#: (key, label, key of its reason or None), in reading order.
ROWS: Final = (
    ("network", "network", None),
    ("address", "address", None),
    ("gateway", "gateway", None),
    ("mac", "MAC", None),
    ("virt_type", "virtualisation", "virt_type_why"),
    ("cpu", "CPU", "cpu_why"),
    ("memory_mib", "memory (MiB)", None),
    ("vcpus", "vCPUs", None),
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def render_html(guest: Mapping[str, Any] | None) -> str:
    """The section as HTML (the environment table's style); says so when no guest was started."""
    parts = [f"<h2>{TITLE}</h2>"]
    if guest is None:
        parts.append('<p class="virtmig-guest-missing">No guest was started in this run.</p>')
        return "".join(parts)
    parts.append('<table class="virtmig-environment virtmig-guest"><thead><tr><th></th><th>used</th>'
                 "<th>why</th></tr></thead><tbody>")
    for key, label, why in ROWS:
        value = guest.get(key)
        reason = guest.get(why) if why else None
        parts.append(f"<tr><th>{_e(label)}</th><td>{_e(DASH if value is None else value)}</td>"
                     f"<td>{_e(reason or '')}</td></tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def summary_text(guest: Mapping[str, Any]) -> list[str]:
    """Lines for the terminal summary: where the guest was and what it ran as, with the reasons."""
    return [
        f"network {guest.get('network', DASH)}, address {guest.get('address', DASH)}, "
        f"gateway {guest.get('gateway', DASH)}, MAC {guest.get('mac', DASH)}",
        f"{guest.get('virt_type', DASH)} ({guest.get('virt_type_why', DASH)})",
        f"CPU {guest.get('cpu', DASH)} ({guest.get('cpu_why', DASH)}), {guest.get('memory_mib', DASH)} MiB, "
        f"{guest.get('vcpus', DASH)} vCPU(s)",
    ]
