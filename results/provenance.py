"""What produced these numbers: code, libraries, hardware and cost, in one short block.

Read from plan.json's settings (the runner records the versions, the device, the GPU count and
the timings) and from each prepared data set's manifest.json (OpenCV and dlib made the crops and
landmarks, before the run). What a run did not record is said to be unrecorded, never guessed;
only partfer's own version falls back to the one building the report, and says so.
"""
from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from partfer.orchestrator.records import RunPlan
from partfer.results.markdown import markdown_table
from partfer.results.paper import display_name

SECONDS_PER_HOUR = 3600
MANIFEST_FILE = "manifest.json"
# manifest "versions" keys (pip distribution names) of the libraries that made the prepared data
PREP_LIBRARIES = {"OpenCV": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
                  "dlib": ("dlib-bin", "dlib")}
NOT_RECORDED = "not recorded"


def duration(seconds) -> str:
    """Seconds as "4639.8 s (1 h 17 min 20 s)"; anything else as given."""
    if not isinstance(seconds, (int, float)):
        return str(seconds)
    minutes, secs = divmod(float(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{seconds:g} s ({int(hours)} h {int(minutes)} min {secs:.0f} s)"


def _report_builder_version() -> str | None:
    try:
        return version("partfer")
    except PackageNotFoundError:
        return None


def _partfer(recorded: dict) -> str:
    if recorded.get("partfer"):
        return str(recorded["partfer"])
    here = _report_builder_version()
    return f"{NOT_RECORDED} (this report was built with {here})" if here else NOT_RECORDED


def _commit(recorded: dict) -> str:
    if "git_commit" not in recorded:
        return NOT_RECORDED
    commit = recorded["git_commit"]
    if not commit:
        return "unknown (not run from a git checkout)"
    dirty = recorded.get("git_dirty")
    return f"`{commit}`" + (" with uncommitted changes" if dirty else "")


def _library(recorded: dict, name: str) -> str:
    value = recorded.get(name)
    if name not in recorded:
        return NOT_RECORDED
    return "not installed" if value is None else str(value)


def manifest_versions(plan: RunPlan) -> dict[str, dict | str]:
    """Each data set's manifest "versions", or why they could not be read."""
    found: dict[str, dict | str] = {}
    for name, info in sorted(plan.datasets.items()):
        path = Path(info.prepared) / MANIFEST_FILE
        try:
            versions = json.loads(path.read_text(encoding="utf-8")).get("versions")
        except (OSError, ValueError, AttributeError) as exc:
            found[name] = f"{path} unreadable ({type(exc).__name__})"
            continue
        found[name] = versions if isinstance(versions, dict) else f"{path} records no versions"
    return found


def _prep_library(manifests: dict[str, dict | str], label: str) -> str:
    """One version when every data set agrees, else each data set's; unreadable manifests named."""
    per_dataset = {}
    for name, versions in manifests.items():
        if isinstance(versions, str):
            per_dataset[name] = f"{NOT_RECORDED} ({versions})"
            continue
        keys = [k for k in PREP_LIBRARIES[label] if k in versions]
        per_dataset[name] = str(versions[keys[0]]) if keys else f"{NOT_RECORDED} in its manifest"
    values = set(per_dataset.values())
    if not values:
        return NOT_RECORDED
    if len(values) == 1:
        return values.pop()
    return "; ".join(f"{display_name(n)}: {v}" for n, v in per_dataset.items())


def gpu_hours(settings: dict) -> str:
    """Wall time x GPUs: the cost to compare runs by; a CPU run costs none."""
    device = str(settings.get("device", ""))
    wall = settings.get("wall_seconds")
    if device and not device.startswith("cuda"):
        return f"0 (CPU run, device {device})"
    gpus = settings.get("gpus")
    if not isinstance(wall, (int, float)):
        return f"{NOT_RECORDED} (no wall time)"
    if not isinstance(gpus, (int, float)):
        return f"{NOT_RECORDED} (the run did not record how many GPUs it used)"
    return f"{wall * gpus / SECONDS_PER_HOUR:.2f} ({gpus:g} GPU(s) x {wall / SECONDS_PER_HOUR:.2f} h)"


def provenance_rows(plan: RunPlan) -> list[list[str]]:
    settings = plan.settings
    recorded = settings.get("versions")
    recorded = recorded if isinstance(recorded, dict) else {}
    manifests = manifest_versions(plan)
    images = settings.get("train_images")
    return [
        ["partfer", _partfer(recorded)],
        ["git commit", _commit(recorded)],
        ["PyTorch", _library(recorded, "torch")],
        ["Ray", _library(recorded, "ray")],
        ["OpenCV (prepared data)", _prep_library(manifests, "OpenCV")],
        ["dlib (prepared data)", _prep_library(manifests, "dlib")],
        ["device", str(settings.get("device", NOT_RECORDED))],
        ["image-steps (training images, summed over models)",
         f"{images:,}" if isinstance(images, int) else NOT_RECORDED],
        ["wall time", duration(settings["wall_seconds"]) if "wall_seconds" in settings
         else NOT_RECORDED],
        ["GPU-hours", gpu_hours(settings)],
    ]


def provenance_markdown(plan: RunPlan) -> str:
    return markdown_table(["", "value"], [[k, v.replace("|", "\\|")] for k, v in
                                          provenance_rows(plan)])
