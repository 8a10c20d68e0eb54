"""The goals `make bench` measures against, and the one table it ends with.

Why one table: each bench prints its own figures as it goes, which a reader
then has to hunt for; issue #13 names a goal per figure (clock offsets,
probe send gap, the harness's overhead, guest boot), so every bench files
its figure here (`GoalTable.add`) and `bench/conftest.py` prints them all at
the end of the run, with whether each meets its goal.  A figure a bench
could not take (say the lab's benches skipped) is simply absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Goal:
    """One goal: what, the goal as text, the figure measured, and whether it meets the goal."""

    what: str
    goal: str
    measured: str
    met: bool


@dataclass
class GoalTable:
    """The goals filed during one bench run, in the order they were filed."""

    rows: list[Goal] = field(default_factory=list)

    def add(self, what: str, goal: str, measured: str, met: bool) -> None:
        self.rows.append(Goal(what, goal, measured, met))

    def render(self) -> str:
        if not self.rows:
            return "no goals measured in this run"
        widths = [max(len(h), *(len(getattr(r, a)) for r in self.rows))
                  for h, a in (("goal", "what"), ("target", "goal"), ("measured", "measured"))]
        head = f"{'goal':<{widths[0]}}  {'target':<{widths[1]}}  {'measured':<{widths[2]}}  met"
        lines = [head, "-" * len(head)]
        lines += [f"{r.what:<{widths[0]}}  {r.goal:<{widths[1]}}  {r.measured:<{widths[2]}}  "
                  f"{'yes' if r.met else 'NO'}" for r in self.rows]
        return "\n".join(lines)
