"""`partfer predict`: expressions of every face in images, folders and videos, with an exported
ensemble (orchestrator.inference.predict.Predictor does the work)."""
from __future__ import annotations

import argparse
import sys

from partfer.cli.help_format import add_command

EXIT_USAGE = 2
EXIT_NOTHING_READ = 1
HELP = "predict the expression of every face in images, folders and videos"
DESCRIPTION = ("Classify every face found in the inputs with a model directory written by "
               "`partfer export`. One output row per face (input, frame, time_s, face, box x y w h, label, "
               "confidence, the ensemble's p_<class>); frames without a face, faces below --min-score and "
               "unreadable inputs get a row saying so. A model trained on synthetic data or a shrunk budget "
               "is named in a warning on stderr and in the model_caveat column. Exit status 1 when no "
               "input could be read.")


def add_predict_parser(subparsers, with_arguments: bool = True) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "predict", HELP, DESCRIPTION)
    if not with_arguments:
        return parser
    from partfer.data_prep.detectors import list_detectors

    parser.add_argument("--model", required=True,
                        help="model directory from `partfer export`: a path or a URI (s3://..., gs://..., file:///...)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (walked recursively), videos")
    parser.add_argument("--out", default=None, help="output .csv or .parquet (left out: CSV on stdout)")
    parser.add_argument("--details", action="store_true",
                        help="also the detector's score, the 68 landmarks lm00_x, lm00_y ... lm67_y (image "
                             "pixels) and every member's (part's) probabilities p_<member>_<class>")
    parser.add_argument("--annotate", default=None, metavar="DIR",
                        help="write each input with its boxes and labels drawn: images as PNG/JPEG, videos as "
                             ".mp4 (H.264 where OpenCV can encode it, else MPEG-4 Part 2; Motion-JPEG .avi where "
                             "neither opens); never over a file: a taken name becomes <name>.annotated.<ext>")
    parser.add_argument("--gradcam", default=None, metavar="DIR",
                        help="write one PNG per face: the crop and each sub-network's Grad-CAM map")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the network runs")
    parser.add_argument("--batch-size", type=int, default=64, help="faces per network pass")
    parser.add_argument("--every", type=int, default=1, help="videos: use every Nth frame")
    parser.add_argument("--detector", default=None, choices=list_detectors(),
                        help="face detector, overriding the model's (left out: the one its training data used)")
    parser.add_argument("--min-score", type=float, default=0.0, metavar="S",
                        help="faces the detector scores below S are not classified (their row says so)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=predict_command)
    return parser


def predict_command(args: argparse.Namespace) -> int:
    """Predict, write the predictions, then draw the inputs: a drawing that cannot be written is
    one error line, and the predictions stay written."""
    from partfer.orchestrator.inference.annotate import AnnotateError
    from partfer.orchestrator.inference.media import expand_inputs
    from partfer.orchestrator.inference.predict import Predictor, check_output, write_predictions
    where = f" -> {args.out}" if args.out else ""
    try:
        check_output(args.out)
        predictor = Predictor.from_dir(args.model, device=args.device, detector=args.detector,
                                       min_score=args.min_score)
        annotator = (predictor.annotator(args.annotate, args.every, "rgb", args.inputs)
                     if args.annotate is not None else None)
        sources = expand_inputs(args.inputs)
        chunks = predictor._chunks(sources, args.batch_size, args.every, args.gradcam, not args.no_progress,
                                   "rgb", args.details, annotator)
        summary = write_predictions(chunks, args.out, predictor.schema(args.gradcam is not None, args.details))
    except (ValueError, FileNotFoundError) as err:    # ModelDirError, ModelFormatError, PredictError ...
        print(f"partfer predict: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:                          # the output or the Grad-CAM folder cannot be written
        print(f"partfer predict: error: cannot write {err.filename or args.out or 'the output'}: "
              f"{err.strerror or type(err).__name__}", file=sys.stderr)
        return EXIT_USAGE
    # what holds for every row, said once beside the summary (an output error stays one line)
    for level, text in predictor.notes(args.details):
        print(f"partfer predict: {level}: {text}", file=sys.stderr)
    below = f", {summary.low_score} faces below --min-score" if summary.low_score else ""
    print(f"partfer predict: {summary.faces} faces, {summary.no_face} frames without a face{below}, "
          f"{summary.errors} errors{where}", file=sys.stderr)
    if annotator is not None:
        try:
            annotator.draw_all(sources)
        except AnnotateError as err:
            kept = f"kept in {args.out}" if args.out else "printed above"
            print(f"partfer predict: error: {err} ({len(annotator.written)} drawn; the predictions are "
                  f"{kept})", file=sys.stderr)
            return EXIT_USAGE
        print(f"partfer predict: annotated inputs -> {args.annotate}", file=sys.stderr)
        if annotator.video_note:
            print(f"partfer predict: note: {annotator.video_note}", file=sys.stderr)
    if summary.frames_read == 0:
        print(f"partfer predict: warning: no input could be read ({summary.errors} unreadable; the "
              f"message column says why)", file=sys.stderr)
        return EXIT_NOTHING_READ
    return 0
