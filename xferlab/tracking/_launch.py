"""`Launch`: who started a run (group choices, overrides, sweep, parent), which gives the run its
name and its tags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Launch:
    """Who started a run: group choices, overrides, sweep and parent — for names and tags."""

    choices: dict[str, str] = field(default_factory=dict)  # e.g. {'freeze': 'lp_ft'}
    overrides: list[str] = field(default_factory=list)
    parent_run_id: str | None = None
    sweep_tags: dict[str, str] = field(default_factory=dict)
    prefix: str = ""  # before the name: a trial's 't7·'
    parallel_jobs: int = 1  # jobs of this launch running at once on this machine

    def run_name(self, *, backbone: str, strategy: str, fraction: float, shots: int | None,
                 seed: int) -> str:
        """e.g. resnet18·lp_ft·f0.05·s1: the choices a researcher scans for in the UI."""
        amount = f"k{shots}" if shots else f"f{fraction:g}"
        return f"{self.prefix}{backbone}·{strategy}·{amount}·s{seed}"

    def tags(self, weights: Mapping[str, str]) -> dict[str, str]:
        """The run's tags: choices, git state, overrides (credentials masked), the `weights.*`
        tags given, and the sweep's."""
        from xferlab.tracking import git_tags, masked

        tags = {f"choice.{k}": v for k, v in self.choices.items()}
        tags.update(git_tags(Path.cwd()))
        tags["overrides"] = masked(" ".join(self.overrides)) or "(none)"
        return {**tags, **weights, **self.sweep_tags}
