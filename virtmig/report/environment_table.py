"""The report's environment section: both hosts' kernel, libvirt, QEMU and CPU side by side.

Side by side, because the question a reader brings is "are these two the
same, and what were they": a fact that differs between the hosts is marked,
and a fact that could not be read says why instead of leaving a blank.
Everything is escaped: host names and command output are not ours.
"""

from __future__ import annotations

import html
from typing import Final

from virtmig.environment import COMPARED, HostFacts, PairEnvironment
from virtmig.report import DASH

#: Not "Environment": pytest-html's own section of that name (pytest-metadata) describes the controller.
TITLE: Final = "Hosts under test"

#: Rows of the table: HostFacts attribute and its label, in reading order.
ROWS: Final = (
    ("hostname", "host name"),
    ("kernel", "kernel"),
    ("os", "OS"),
    ("libvirt_version", "libvirt"),
    ("qemu_version", "QEMU"),
    ("cpu_model", "CPU model"),
    ("cpu_count", "logical CPUs"),
    ("libvirt_cpu", "libvirt host CPU"),
    ("host_uuid", "host UUID"),
)

STYLE: Final = """<style>
.virtmig-environment { border-collapse: collapse; margin: 8px 0 16px; font-size: 12px; }
.virtmig-environment th, .virtmig-environment td { border: 1px solid #ccc; padding: 3px 6px; text-align: left;
  color: #222; }
.virtmig-environment th { background: #f2f2f2; }
.virtmig-environment tr.differs td { background: #fff4e5; }
.virtmig-environment td.unknown { color: #666; }
</style>"""

_COMPARED_ATTRS: Final = frozenset(attr for attr, _ in COMPARED)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _value(facts: HostFacts, attr: str) -> str:
    value = getattr(facts, attr)
    if value is None:
        return f'<td class="unknown">{DASH}</td>'
    return f"<td>{_e(value)}</td>"


def render_html(env: PairEnvironment | None, *, problem: str | None = None) -> str:
    """The whole section; `problem` explains an environment that was not gathered at all."""
    parts = [STYLE, f"<h2>{TITLE}</h2>"]
    if env is None:
        why = problem or "no test of this run reached the host pair"
        parts.append(f'<p class="virtmig-environment-missing">Not gathered: {_e(why)}.</p>')
        return "".join(parts)
    differs = set(env.differences())
    parts.append('<table class="virtmig-environment">')
    parts.append(f"<thead><tr><th></th><th>source: {_e(env.src.name)}</th>"
                 f"<th>destination: {_e(env.dst.name)}</th></tr></thead><tbody>")
    labels = dict(COMPARED)
    for attr, label in ROWS:
        marked = attr in _COMPARED_ATTRS and labels[attr] in differs
        css = ' class="differs"' if marked else ""
        name = f"{_e(label)} (differs)" if marked else _e(label)
        parts.append(f"<tr{css}><th>{name}</th>{_value(env.src, attr)}{_value(env.dst, attr)}</tr>")
    parts.append("</tbody></table>")
    errors = [f"{f.name}: {e}" for f in (env.src, env.dst) for e in f.errors] + list(env.notes)
    if errors:
        parts.append('<ul class="virtmig-environment-errors">')
        parts.extend(f"<li>{_e(e)}</li>" for e in errors)
        parts.append("</ul>")
    return "".join(parts)


def summary_text(env: PairEnvironment) -> list[str]:
    """One line per host for the terminal summary."""
    lines = []
    for role, f in (("src", env.src), ("dst", env.dst)):
        lines.append(f"{role} {f.name}: kernel {f.kernel or DASH}, libvirt {f.libvirt_version or DASH}, "
                     f"QEMU {f.qemu_version or DASH}, CPU {f.cpu_model or f.libvirt_cpu or DASH}")
    if env.differences():
        lines.append("differs between the hosts: " + ", ".join(env.differences()))
    return lines
