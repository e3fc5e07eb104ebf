"""The network recipes a run can train (the config's `networks`), each described once.

A recipe says which stages its models train, which members its ensemble has and which landmark
region each member learns first, how tables name it, and which analyses show it. The plan, the
final models, sweeps, export, the Grad-CAM analysis and results/ all read it here, so a new recipe
is one `register` call (its stages drawn from config.STAGES, which hold their epochs and rates).

Baseline: `members` sub-networks trained from scratch on expressions, one stage.
FTL: `members` sub-networks whose extractor first learns the whole face's landmarks.
EL: one sub-network per configured face part, each first learning its own part's landmarks; each
part is a system of its own (a Table I column, a confusion matrix, a Grad-CAM column).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from partfer.data_prep.ibug68 import FULL_FACE, PART_ORDER

BASELINE_STAGES = ("baseline",)
# landmark regression, then a new classifier head on the frozen extractor, then both together
TRANSFER_STAGES = ("landmark", "head", "finetune")


@dataclass(frozen=True)
class Network:
    name: str                      # the config's `networks` value, ModelRecord.network, its model folders
    column: str                    # its ensemble's Table I column and label in reports
    stages: tuple[str, ...]        # trained in this order, each stage from the previous one's weights
    region: str | None = None      # the landmark region every member learns first (not by_part)
    by_part: bool = False          # one member per configured part, learning that part's landmarks
    gradcam: bool = True           # its maps are computed and drawn (Fig. 11)

    def members(self, settings: Mapping) -> list[tuple[str, str | None]]:
        """(member, landmark region) of each member, from a config or a run's plan settings
        (either holds `parts` and `members`)."""
        if self.by_part:
            return [(part, part) for part in settings.get("parts") or []]
        return [(f"m{i}", self.region) for i in range(int(settings.get("members") or 0))]

    def member_names(self, settings: Mapping) -> list[str]:
        return [member for member, _ in self.members(settings)]

    def region_of(self, member: str) -> str | None:
        """The landmark region a member of this network learns (None: none)."""
        return member if self.by_part else self.region

    @property
    def has_landmarks(self) -> bool:
        """Whether its models regress landmarks first (rows of the landmark before/after study)."""
        return "landmark" in self.stages

    def member_column(self, member: str) -> str:
        """The table column of one member alone: a part's own name, else "<column> <member>"."""
        return member.capitalize() if self.by_part else f"{self.column} {member}"

    def gradcam_systems(self) -> list[str]:
        """Its Grad-CAM systems in Fig. 11's order: each part's network (the paper's part order),
        or the ensemble (the union of its members' maps)."""
        if not self.gradcam:
            return []
        return [self.gradcam_system(part) for part in PART_ORDER] if self.by_part else [self.name]

    def gradcam_system(self, member: str) -> str:
        """The Grad-CAM system a member's map belongs to."""
        return f"{self.name}-{member}" if self.by_part else self.name


# name -> recipe, in the paper's order (tables, sorting and plans follow it)
NETWORKS: dict[str, Network] = {}


def register(network: Network) -> Network:
    """Add a recipe; its name must be new."""
    if network.name in NETWORKS:
        raise ValueError(f"network {network.name!r} is already registered")
    NETWORKS[network.name] = network
    return network


register(Network("baseline", "Baseline", BASELINE_STAGES))
register(Network("ftl", "FTL", TRANSFER_STAGES, region=FULL_FACE))
register(Network("el", "EL", TRANSFER_STAGES, by_part=True))


def stage_sequences() -> list[tuple[str, ...]]:
    """The distinct stage sequences of the registered networks, in their order."""
    return list(dict.fromkeys(spec.stages for spec in NETWORKS.values()))


def column_of(name: str) -> str:
    """A network's label; the name itself for one not registered (an old run's plan)."""
    spec = NETWORKS.get(name)
    return spec.column if spec else name


def gradcam_systems() -> list[str]:
    """Fig. 11's columns: every registered network's Grad-CAM systems, in order."""
    return [system for spec in NETWORKS.values() for system in spec.gradcam_systems()]


def gradcam_title(system: str) -> str:
    """A Grad-CAM system's label ("EL mouth", "FTL"); the system itself when unknown."""
    for spec in NETWORKS.values():
        if system == spec.name and not spec.by_part:
            return spec.column
        if spec.by_part and system.startswith(f"{spec.name}-"):
            return f"{spec.column} {system[len(spec.name) + 1:]}"
    return system
