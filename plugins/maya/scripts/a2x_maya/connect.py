"""Which player output drives which blendShape weight: by name, never by index.

A blendShape's targets are its ``weight[i]`` aliases (``jawOpen``, ``AK_17_JawOpen``,
``blendShape1.EyeBlink_L``...). They are matched to the player's outputs with the core's one
name matcher (:func:`a2x_core.retarget.auto_map`, case-insensitive and prefix-tolerant);
unmatched targets are listed and left alone. Maya-ACE wires an unmatched target to the
output of the same index; a2x never does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from a2x_core.retarget import auto_map

from .attributes import OUTPUT_POSES, OUTPUT_WEIGHTS

_WEIGHT = re.compile(r"^weight\[(\d+)\]$")


def parse_alias_list(flat: Sequence[str] | None) -> dict[int, str]:
    """``cmds.aliasAttr(blendShape, q=True)`` -> weight index -> target name.

    The query answers ``[alias, "weight[i]", alias, "weight[j]", ...]``; entries that are not
    weights (an alias on ``envelope``) are skipped.
    """
    items = list(flat or [])
    out: dict[int, str] = {}
    for alias, attr in zip(items[0::2], items[1::2], strict=False):
        match = _WEIGHT.match(attr)
        if match:
            out[int(match.group(1))] = alias
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class Link:
    """One connection: ``player.outputWeights[source_index]`` -> ``blendshape.weight[index]``."""

    blendshape: str
    index: int
    target: str
    source: str

    @property
    def source_index(self) -> int:
        return OUTPUT_POSES.index(self.source)

    @property
    def source_attr(self) -> str:
        return f"{OUTPUT_WEIGHTS.name}[{self.source_index}]"

    @property
    def dest_plug(self) -> str:
        return f"{self.blendshape}.weight[{self.index}]"


@dataclass
class ConnectionPlan:
    """What connecting a player to some blendShape nodes will do.

    Attributes:
        links: the name-matched connections, in blendShape and weight order.
        unmatched: ``"blendShape1.Basis"``-style names that match no pose (left unwired).
        unused_sources: ARKit-52 poses no target receives.
        skipped: weights already driven by something else, kept because ``force`` was off.
    """

    links: list[Link] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    unused_sources: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def report(self) -> list[str]:
        """Warning lines for the script editor (empty when everything matched)."""
        lines = []
        if self.unmatched:
            lines.append(
                f"{len(self.unmatched)} blendShape target(s) match no a2x pose and were left "
                f"unconnected: {', '.join(self.unmatched)}"
            )
        if self.skipped:
            lines.append(
                f"{len(self.skipped)} weight(s) already have an input and were kept (use "
                f"-force to replace): {', '.join(self.skipped)}"
            )
        return lines


def plan_connections(
    targets: Mapping[str, Mapping[int, str]],
    connected: Iterable[str] = (),
    force: bool = False,
) -> ConnectionPlan:
    """Match every blendShape weight to a player output by name.

    Args:
        targets: blendShape node -> weight index -> target name (see :func:`parse_alias_list`).
        connected: ``"bs.weight[i]"`` plugs that already have an input connection.
        force: replace existing inputs (otherwise they are reported in ``skipped``).
    """
    busy = set(connected)
    plan = ConnectionPlan()
    used: set[str] = set()
    for blendshape, weights in targets.items():
        mapping = auto_map(weights.values(), OUTPUT_POSES)
        by_target = {row.target: row.source for row in mapping.targets}
        for index, name in weights.items():
            source = by_target.get(name)
            if source is None:
                plan.unmatched.append(f"{blendshape}.{name}")
                continue
            link = Link(blendshape, index, name, source)
            if link.dest_plug in busy and not force:
                plan.skipped.append(f"{blendshape}.{name}")
                continue
            plan.links.append(link)
            used.add(source)
    plan.unused_sources = [p for p in OUTPUT_POSES[:52] if p not in used]
    return plan
