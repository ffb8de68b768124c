"""``yolo-ft prepare``: flags → :func:`yolo_ft.prepare.api.prepare` → a short summary table.

Only argparse is imported at module load (``yolo-ft --help`` stays fast); the pipeline, rich and
the readers load when the command runs.
"""

from __future__ import annotations

import argparse

from yolo_ft.prepare.readers import READER_MODULES  # stdlib-only module: keeps --help fast


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="turn labelled images (YOLO, COCO, VOC, LabelMe, CVAT, masks, DICOM) into a clean YOLO dataset",
        description="Read SOURCE, validate every sample, split without leaks (grouped, near-duplicate aware) "
                    "and write DIR/images, DIR/labels, DIR/data.yaml and DIR/report.json. Strict by default: "
                    "any problem lists every bad file and writes nothing.",
    )
    p.add_argument("source", help="dataset folder, or an annotation file (COCO json, CVAT xml, data.yaml)")
    p.add_argument("--out", required=True, metavar="DIR", help="output dataset folder")
    p.add_argument("--format", choices=sorted(READER_MODULES),
                   help="source format (detected when omitted)")
    p.add_argument("--images", metavar="DIR", help="folder with the images when they live apart from the annotations")
    p.add_argument("--masks", metavar="DIR", help="folder with segmentation masks (one per image, same name)")
    p.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test fractions for a new split (default 0.8,0.1,0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split and augmentation (default 0)")
    p.add_argument("--group-by", metavar="REGEX",
                   help="keep images whose file names share this regex's first group (or whole match) in one split")
    p.add_argument("--resplit", action="store_true", help="ignore the source's own split and make a grouped one")
    p.add_argument("--classes", metavar="A,B,...", help="class names in the order that sets their ids")
    p.add_argument("--augment", type=int, default=0, metavar="N", help="write N augmented variants per train image")
    p.add_argument("--skip-invalid", action="store_true",
                   help="write the dataset without bad samples (listed in report.json) instead of failing")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.add_argument("--no-near-dup", dest="near_dup", action="store_false",
                   help="skip perceptual-hash near-duplicate grouping (faster, but neighbouring slices may leak)")
    p.add_argument("--near-dup-threshold", type=int, default=2, metavar="BITS",
                   help="pHash bits two images may differ by and still count as near-duplicates (default 2)")
    p.add_argument("--no-decode", dest="verify_images", action="store_false",
                   help="read image headers only (fastest; truncated images are then not caught, and with "
                        "near-duplicate grouping on, images are decoded anyway)")
    p.add_argument("--workers", type=int, metavar="N", help="threads for reading and writing (default: up to 4)")
    masks = p.add_argument_group("masks")
    masks.add_argument("--threshold", type=float, help="mask pixel value above which a pixel is foreground")
    masks.add_argument("--connectivity", type=int, choices=[4, 8], help="connected-component connectivity")
    masks.add_argument("--min-area", type=int, help="drop mask components smaller than this many pixels")
    masks.add_argument("--mask-class", help="class name for mask objects")
    dicom = p.add_argument_group("dicom")
    dicom.add_argument("--window", help="DICOM/16-bit windowing: 'center,width' (e.g. 40,400) or a preset name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from yolo_ft.prepare.api import prepare
    from yolo_ft.records import InvalidDatasetError

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        try:
            report = prepare(
                args.source, args.out, format=args.format, images=args.images, masks=args.masks,
                split=args.split, seed=args.seed, group_by=args.group_by, resplit=args.resplit,
                classes=args.classes, augment=args.augment, skip_invalid=args.skip_invalid,
                overwrite=args.overwrite, near_dup=args.near_dup, near_dup_threshold=args.near_dup_threshold,
                verify_images=args.verify_images, workers=args.workers, progress=progress,
                threshold=args.threshold, connectivity=args.connectivity, min_area=args.min_area,
                mask_class=args.mask_class, window=args.window,
            )
        except InvalidDatasetError as e:
            bar.stop()
            console.print(f"[red]{len(e.problems)} problem(s); nothing was written[/red] "
                          "(use --skip-invalid to write without the bad samples):", highlight=False)
            for p in e.problems:
                print(_printable(f"  {p.file}: {p.problem}"))
            return 2
    out = Console()
    table = Table(title=f"{report['output']} ({report['format']}, split: {report['split']['mode']})")
    table.add_column("split")
    table.add_column("images", justify="right")
    table.add_column("boxes", justify="right")
    table.add_column("negatives", justify="right")
    for s in ("train", "val", "test"):
        table.add_row(s, str(report["images"][s]), str(report["boxes"][s]), str(report["negatives"][s]))
    out.print(table)
    out.print(f"classes: {', '.join(report['classes'])}", highlight=False)
    if report["augmented"]["images"]:
        out.print(f"augmented: {report['augmented']['images']} train images added")
    if report["skipped"]:
        out.print(f"[yellow]problems: {len(report['problems'])}; skipped {len(report['skipped'])} bad sample(s) "
                  "(listed in report.json)[/yellow]")
    else:
        out.print("problems: 0")
    for w in report["warnings"]:
        out.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    out.print(f"data.yaml and report.json written to {report['output']}", highlight=False)
    return 0


def _printable(text: str) -> str:
    """File names that are not valid UTF-8 arrive as surrogate escapes; show them, don't crash."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
