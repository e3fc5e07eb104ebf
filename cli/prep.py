"""`partfer synth` and `partfer prep`: write a synthetic data set; prepare a raw one as Parquet.

Whole-run problems (missing root, empty data set, missing model file, bad option) print one
line on stderr and exit with code 2; no traceback, because they are the user's to fix.
`python -m partfer.data_prep synth|prep ...` runs these two alone (`main`).
"""
from __future__ import annotations

import argparse
import sys

from partfer.cli.help_format import add_command

EXIT_USAGE = 2
# Whole-run errors: ValueError and FileNotFoundError subclasses of data_prep.errors, FileExistsError.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError)
SYNTH_HELP = "write a synthetic face data set (drawn faces with true landmarks)"
PREP_HELP = "prepare a raw data set (CLAHE, face crop, 68 landmarks) as Parquet"


def _fail(command: str, err: Exception) -> int:
    print(f"partfer {command}: error: {err}", file=sys.stderr)
    return EXIT_USAGE


def add_synth_parser(subparsers, with_arguments: bool = True) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "synth", SYNTH_HELP,
                         "Write a learnable synthetic data set in a real data set's layout.")
    if not with_arguments:
        return parser
    from partfer.data_prep.synth import known_synth_layouts

    parser.add_argument("--layout", default="jaffe", choices=known_synth_layouts(),
                        help="file layout to write: JAFFE's flat folder, CK+'s official sequence tree, "
                             "SFEW's Train/Val class folders (default: jaffe)")
    parser.add_argument("--out", required=True, help="new or empty output folder")
    parser.add_argument("--subjects", type=int, default=10, help="number of people (default: 10)")
    parser.add_argument("--per-class", type=int, default=3,
                        help="images per person and class; ckplus: sequences per person and expression (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default: 0)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default: 256)")
    parser.add_argument("--classes", default=None,
                        help="comma-separated classes (default: the layout's, e.g. JAFFE's 7)")
    parser.add_argument("--frames", type=int, default=6,
                        help="ckplus: frames per sequence, neutral onset to peak, at least 4 (default: 6)")
    parser.set_defaults(func=run_synth)
    return parser


def run_synth(args: argparse.Namespace) -> int:
    from partfer.data_prep.synth import synthesize

    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else None
    try:
        summary = synthesize(args.layout, args.out, subjects=args.subjects, per_class=args.per_class,
                             seed=args.seed, size=args.size, classes=classes, frames=args.frames)
    except USER_ERRORS as err:
        return _fail("synth", err)
    print(f"{summary.n_images} images ({len(summary.subjects)} subjects, {len(summary.classes)} classes: "
          f"{', '.join(summary.classes)}) in {summary.out_dir}")
    return 0


def add_prep_parser(subparsers, with_arguments: bool = True) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "prep", PREP_HELP,
                         "Read a data set, detect and crop faces, annotate 68 landmarks, and write a "
                         "content-addressed prepared directory (reused when nothing changed).")
    if not with_arguments:
        return parser
    from partfer.data_prep.annotators import list_annotators
    from partfer.data_prep.detectors import list_detectors
    from partfer.data_prep.readers import known_layouts
    from partfer.data_prep.settings import NO_FACE_CHOICES, PrepSettings

    defaults = PrepSettings()
    parser.add_argument("--dataset", required=True, help="name of the prepared data set (e.g. jaffe, ckplus)")
    parser.add_argument("--root", required=True, help="the data set's folder")
    parser.add_argument("--layout", default=None, choices=known_layouts(),
                        help="file layout (default: the --dataset name when it is a layout)")
    parser.add_argument("--out", default="out", help="output root; data goes to OUT/prepared/ (default: out)")
    parser.add_argument("--detector", default=defaults.detector, choices=list(list_detectors()),
                        help="ssd | hog | none (default: ssd)")
    parser.add_argument("--annotator", default=defaults.annotator, choices=list(list_annotators()),
                        help="dlib | fan | dataset (default: dlib)")
    parser.add_argument("--subject-regex", default=None,
                        help="folder and sfew layouts: regex on the file stem whose group (or group "
                             "'subject') is the subject")
    parser.add_argument("--crop-size", type=int, default=defaults.crop_size, help="crop side (default: 160)")
    parser.add_argument("--ssd-confidence", type=float, default=defaults.ssd_confidence, help="default: %(default)s")
    parser.add_argument("--box-margin", type=float, default=defaults.box_margin, help="default: %(default)s")
    parser.add_argument("--device", default=defaults.device, help="torch device for --annotator fan")
    parser.add_argument("--no-face", default=defaults.no_face, choices=NO_FACE_CHOICES,
                        help="an image whose face the detector misses: crop its largest centred square "
                             "and flag the row (face_fallback), or reject it (default: center_square)")
    parser.add_argument("--ray-address", default=None, help="Ray cluster to use (default: start a local one)")
    parser.add_argument("--no-progress", action="store_true", help="no Ray Data progress output")
    parser.set_defaults(func=run_prep)
    return parser


def run_prep(args: argparse.Namespace) -> int:
    from partfer.data_prep.readers import known_layouts

    if "://" in args.out:
        return _fail("prep", ValueError(
            f"--out {args.out}: prep writes a local folder; to put prepared data in an object "
            f"store, run `partfer run --out {args.out}` (it prepares and uploads), or give the "
            f"folder prep wrote to `partfer run --prepared NAME=DIR --out {args.out}`"))
    layout = args.layout or (args.dataset if args.dataset in known_layouts() else None)
    if layout is None:
        return _fail("prep", ValueError(f"--layout is needed for data set {args.dataset!r} "
                                        f"(known layouts: {', '.join(known_layouts())})"))
    from partfer.data_prep.errors import RejectError
    try:
        from partfer.data_prep.pipeline import PrepRequest, PrepSettings, prepare_datasets

        settings = PrepSettings(detector=args.detector, annotator=args.annotator, crop_size=args.crop_size,
                                ssd_confidence=args.ssd_confidence, box_margin=args.box_margin,
                                device=args.device, no_face=args.no_face)
        options = {"subject_regex": args.subject_regex} if args.subject_regex else {}
        request = PrepRequest(args.dataset, layout, args.root, settings, options)
        info = prepare_datasets([request], args.out, ray_address=args.ray_address,
                                progress=not args.no_progress)[args.dataset]
    except RejectError:
        raise   # never a whole-run error: a RejectError escaping here is a bug
    except USER_ERRORS as err:
        return _fail("prep", err)
    from partfer.data_prep.prepared import read_manifest

    manifest = read_manifest(info.path)
    for note in manifest.get("notes", []):
        print(f"partfer prep: note: {note}", file=sys.stderr)
    state = "reused" if info.reused else "prepared"
    fallback = manifest.get("face_fallback", {}).get("rows", 0)
    no_landmarks = manifest.get("no_landmarks", {}).get("rows", 0)
    print(f"{info.path}\n{args.dataset}: {state}, {info.n_ok} images, {info.n_rejected} rejected "
          f"(see rejects.csv), classes: {', '.join(info.classes)}; {fallback} cropped by the "
          f"no-face fallback, {no_landmarks} without landmarks")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """A parser with just these two commands (for `python -m partfer.data_prep`)."""
    parser = argparse.ArgumentParser(prog="python -m partfer.data_prep")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_synth_parser(subparsers)
    add_prep_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
