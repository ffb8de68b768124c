"""``prepare()``: the library call behind ``yolo-ft prepare`` — read, validate, split, write.

Records stream from a reader through a small thread pool (image reads and decodes release the
GIL) into compact validated records; only a few ints per image (content digest, pHash) are kept
beside them. Strict by default: any problem raises :class:`InvalidDatasetError` listing every
problem, before anything is written. The output is built in a temp dir and moved into place.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from yolo_ft.utils.images import pil_open
from yolo_ft.prepare import augment as augment_mod
from yolo_ft.prepare import split as split_mod
from yolo_ft.prepare import validate, write
from yolo_ft.prepare.phash import DEFAULT_THRESHOLD
from yolo_ft.prepare.readers import detect_format, get_reader
from yolo_ft.prepare.sample import LabelTable, Sample
from yolo_ft.records import InvalidDatasetError, Problem, Record, YoloFtError
from yolo_ft.utils.atomic import atomic_output_dir, recover_stale_temps
from yolo_ft.utils.paths import is_within

Progress = Callable[[str, int, "int | None"], None]
_BATCH = 256
_MAX_BARE_ID = 10_000
_ARCHIVES = frozenset({".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz", ".gz", ".bz2", ".xz", ".7z", ".rar"})
_MAX_NOTES = 1000
_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
            "dev": "val", "test": "test", "testing": "test"}


def prepare(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str | None = None,  # noqa: A002 - mirrors the --format flag
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
    split: str | Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    group_by: str | None = None,
    resplit: bool = False,
    classes: str | Sequence[str] | None = None,
    augment: int = 0,
    skip_invalid: bool = False,
    overwrite: bool = False,
    near_dup: bool = True,
    near_dup_threshold: int = DEFAULT_THRESHOLD,
    verify_images: bool = True,
    workers: int | None = None,
    progress: Progress | None = None,
    **reader_options: Any,
) -> dict:
    """Turn a labelled image set into a YOLO dataset at ``out``; returns the report (also report.json).

    Mirrors ``yolo-ft prepare`` flag for flag. ``reader_options`` go to the reader (masks:
    ``threshold``, ``connectivity``, ``min_area``, ``mask_class``; DICOM: ``window``).

    Raises :class:`InvalidDatasetError` listing every problem (strict mode; nothing is written),
    or :class:`YoloFtError` for unusable arguments (``out`` exists without ``overwrite``, ...).
    """
    t0 = time.perf_counter()
    source = Path(source)
    out = Path(out).absolute()
    images_dir = Path(images) if images is not None else None
    masks_dir = Path(masks) if masks is not None else None
    progress = progress or (lambda stage, done, total: None)
    if not source.exists():
        raise YoloFtError(f"source {source} does not exist")
    if source.is_file() and (source.suffix.lower() in _ARCHIVES or "".join(source.suffixes[-2:]).lower() in _ARCHIVES):
        raise YoloFtError(f"{source} is an archive: yolo-ft does not extract archives (an entry such as ../x could "
                          "land outside the target). Unpack it, check what it holds, and pass the folder.")
    for flag, d in (("--images", images_dir), ("--masks", masks_dir)):
        if d is not None and not d.is_dir():
            raise YoloFtError(f"{flag} {d} is not a folder")
    _check_output(source, out, overwrite, [p for p in (images_dir, masks_dir) if p is not None])
    fractions = split_mod.parse_split(split)
    class_list = _parse_classes(classes)
    if augment < 0:
        raise YoloFtError("--augment must be 0 or more")
    reader_options = {k: v for k, v in reader_options.items() if v is not None}

    fmt = format or _detect(source, masks_dir)
    reader = _reader(fmt)
    source_root = (source.parent if source.is_file() else source).resolve()
    roots = [source_root] + [p.resolve() for p in (images_dir, masks_dir) if p is not None]

    # 1. read + per-record validation (streamed; only compact Samples are kept)
    reader_problems: list[Problem] = []
    table = LabelTable()
    samples: list[Sample] = []
    records = reader.read(source, images=images_dir, masks=masks_dir, **reader_options)
    n_workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        for batch in _batches(records, reader_problems):
            for c in pool.map(
                lambda r: validate.check_record(r, roots=roots, decode=verify_images, near_dup=near_dup), batch
            ):
                samples.append(Sample.from_checked(c, table))
            progress("read", len(samples), None)
    t_read = time.perf_counter()
    if not samples and not reader_problems:
        raise YoloFtError(f"no images found in {source} (format {fmt})")

    # 2. cross-record checks
    validate.find_duplicates(samples)
    names, class_warnings = _class_order(class_list, reader, source, samples, table, reader_options)
    validate.check_classes(samples, table, names)
    problems = sorted(reader_problems + [p for c in samples if c.problems for p in c.problems],
                      key=lambda p: (p.file, p.problem))
    if problems and not skip_invalid:
        raise InvalidDatasetError(problems)
    good = [c for c in samples if c.ok]
    skipped = sorted({p.file for p in reader_problems} | {c.image for c in samples if not c.ok})
    del samples
    if not good:
        raise YoloFtError(f"no valid images left in {source} after skipping {len(skipped)} bad sample(s)")

    # 3. splits
    keys = [split_mod.display_name(Path(c.image), source_root) for c in good]
    src_splits = [_ALIASES.get((c.split or "").lower()) for c in good]
    keep = not resplit and all(src_splits)
    warnings: list[str] = list(class_warnings)
    if not resplit and any(src_splits) and not keep:
        warnings.append("only some images have a source split; all images were split anew")
    groups, nd, unmatched = split_mod.group_ids(
        [Path(c.image).name for c in good],
        [c.group for c in good],
        [c.phash for c in good] if near_dup else None,
        group_by=group_by, threshold=near_dup_threshold, splits=src_splits if keep else None, display=keys,
    )
    if unmatched:
        warnings.append(f"{unmatched} image name(s) did not match --group-by {group_by!r}; each is its own group")
    if keep:
        final_splits = [s for s in src_splits if s]
        for s, others in nd.with_twin_in_other_split.items():
            n_s = final_splits.count(s)
            for o, k in others.items():
                if (s != "train" and o == "train") or (s == "test" and o == "val"):
                    warnings.append(
                        f"{k} of {n_s} {s} images have a near-duplicate in {o} (pHash within "
                        f"{near_dup_threshold} bits): {s} metrics will be optimistic; use --resplit for a "
                        f"grouped, leak-free split")
    else:
        final_splits = split_mod.assign_splits(keys, groups, fractions, seed)
        warnings.extend(_split_balance_warnings(final_splits, groups, fractions))
    straddling = split_mod.group_straddles(groups, final_splits)
    if keep and straddling:
        warnings.append(f"{straddling} group(s) (--group-by / near-duplicates) straddle the kept source splits")
    t_split = time.perf_counter()

    # 4. write (file creation is I/O-latency bound: a few threads hide it)
    class_index = {n: i for i, n in enumerate(names)}
    out_names = write.output_names(good, keys)
    how_counter: Counter[str] = Counter()
    img_counts: Counter[str] = Counter()
    box_counts: Counter[str] = Counter()
    neg_counts: Counter[str] = Counter()
    class_counts: Counter[int] = Counter()
    aug_images = aug_boxes = 0
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        write.make_dirs(tmp)
        order = sorted(range(len(good)), key=lambda i: keys[i])

        def write_one(i: int) -> str:
            return write.write_sample(tmp, good[i].to_record(table), final_splits[i], out_names[i], class_index)

        with ThreadPoolExecutor(max_workers=max(4, n_workers)) as pool:
            # submitted in chunks: one Future per image for 100k images would cost ~100 MB
            chunks = (order[k:k + _BATCH] for k in range(0, len(order), _BATCH))
            results = ((i, how) for chunk in chunks for i, how in zip(chunk, list(pool.map(write_one, chunk))))
            for done, (i, how) in enumerate(results, 1):
                c, s = good[i], final_splits[i]
                how_counter[how] += 1
                img_counts[s] += 1
                box_counts[s] += c.n_boxes
                neg_counts[s] += not c.n_boxes
                class_counts.update(c.labels)
                if done % 500 == 0 or done == len(order):
                    progress("write", done, len(order))
        if augment:
            aug_images, aug_boxes = _write_augmented(tmp, good, table, final_splits, out_names, order, augment,
                                                    seed, class_index, progress)
            img_counts["train"] += aug_images
            box_counts["train"] += aug_boxes
        write.write_data_yaml(tmp, out, names, dict(img_counts))
        notes = [n for c in good if c.notes for n in c.notes]
        by_name = Counter({table.names[i]: k for i, k in class_counts.items()})
        report = {
            "source": str(source), "format": fmt, "output": str(out),
            "images": {s: img_counts[s] for s in write.SPLITS},
            "boxes": {s: box_counts[s] for s in write.SPLITS},
            "negatives": {s: neg_counts[s] for s in write.SPLITS},
            "classes": list(names),
            "class_counts": {n: by_name[n] for n in names},
            "problems": [p.as_dict() for p in problems],
            "skipped": skipped,
            "warnings": warnings,
            "notes": [{"file": n.file, "note": n.problem} for n in notes[:_MAX_NOTES]],
            "notes_total": len(notes),
            "split": {
                "mode": "source" if keep else "grouped", "fractions": [round(f, 6) for f in fractions] if not keep else None,
                "seed": seed, "group_by": group_by, "groups": len(set(groups)),
                "largest_group": max(Counter(groups).values()), "straddling_groups": straddling,
            },
            "near_duplicates": {
                "enabled": near_dup, "threshold": near_dup_threshold, "pairs": nd.pairs,
                "groups": nd.components, "largest_group": nd.largest_component,
                "with_twin_in_other_split": nd.with_twin_in_other_split,
                "examples": [list(e) for e in nd.examples],
            },
            "augmented": {"per_image": augment, "images": aug_images, "boxes": aug_boxes},
            "files": {"linked": how_counter["link"], "copied": how_counter["copy"], "rendered": how_counter["render"]},
            "settings": {"format": fmt, "split": list(fractions), "seed": seed, "group_by": group_by,
                         "resplit": resplit, "classes": class_list, "augment": augment, "skip_invalid": skip_invalid,
                         "near_dup": near_dup, "verify_images": verify_images,
                         "reader_options": {k: str(v) for k, v in reader_options.items()}},
            "timing_s": {"read_validate": round(t_read - t0, 3), "split": round(t_split - t_read, 3),
                         "write": round(time.perf_counter() - t_split, 3)},
        }
        write.write_report(tmp, report)
    return report


# ------------------------------------------------------------------------------------------ helpers
def _check_output(source: Path, out: Path, overwrite: bool, extra: list[Path]) -> None:
    for src in [source, *extra]:
        if is_within(src, out) or is_within(out, src if src.is_dir() else src.parent):
            raise YoloFtError(f"--out {out} must be outside the source {src} (and not contain it)")
    if out.absolute().parent.is_dir():
        recover_stale_temps(out.absolute())  # a killed earlier run's temp, or its moved-aside old output
    if out.exists() and not overwrite:
        raise YoloFtError(f"{out} already exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise YoloFtError(f"{out} exists and is not a directory")


def _parse_classes(classes: str | Sequence[str] | None) -> list[str] | None:
    if classes is None:
        return None
    items = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else [str(c) for c in classes]
    items = [c for c in items if c]
    if not items or len(set(items)) != len(items):
        raise YoloFtError(f"--classes must be distinct non-empty names, got {classes!r}")
    return items


def _detect(source: Path, masks: Path | None) -> str:
    try:
        return detect_format(source, masks=masks)
    except ValueError as e:
        raise YoloFtError(str(e)) from None


def _reader(fmt: str):
    try:
        return get_reader(fmt)
    except ValueError as e:
        raise YoloFtError(str(e)) from None
    except ModuleNotFoundError as e:
        raise YoloFtError(f"the {fmt} reader is not available in this build ({e})") from None


def _batches(items: Iterable[Record | Problem], problems: list[Problem]) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for item in items:
        if isinstance(item, Problem):
            problems.append(item)
            continue
        batch.append(item)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _split_balance_warnings(splits: Sequence[str], groups: Sequence[int], fractions) -> list[str]:
    """Whole groups can make a split miss its target; say so instead of letting it pass unseen."""
    out = []
    n = len(splits)
    counts = Counter(splits)
    largest = max(Counter(groups).values())
    for name, frac in zip(split_mod.SPLITS, fractions):
        if frac > 0 and counts[name] == 0:
            out.append(f"the {name} split is empty: {n} images in {len(set(groups))} groups were too few for "
                       f"a {frac:.0%} share")
        elif frac > 0 and abs(counts[name] / n - frac) > 0.05:
            out.append(f"the {name} split holds {counts[name] / n:.0%} of the images (target {frac:.0%}) because "
                       f"groups are kept whole (largest group: {largest} images)")
    return out


def _natural_key(s: str) -> list:
    # Digit runs compare as numbers via (length, digits): int() refuses runs over 4300 digits, and isdigit()
    # accepts characters like "²" that int() cannot read.
    return [(len(t.lstrip("0")), t.lstrip("0")) if t.isdecimal() else t.lower() for t in re.split(r"(\d+)", s)]


def _class_order(class_list, reader, source, samples, table, reader_options) -> tuple[list[str], list[str]]:
    """Final class order: --classes, else the source's own list (ids kept), else sorted names."""
    warnings: list[str] = []
    used_ids: set[int] = set()
    for c in samples:
        used_ids.update(c.labels)
    used = {table.names[i] for i in used_ids}
    if class_list is not None:
        unused = [c for c in class_list if c not in used]
        if unused:
            warnings.append(f"class(es) {', '.join(unused)} from --classes have no boxes")
        return class_list, warnings
    hook = getattr(reader, "class_names", None)
    names = hook(source, **reader_options) if callable(hook) else None
    if names:
        seen: list[str] = []
        for n in names:
            if n in seen:
                warnings.append(f"class name {n!r} appears twice in the source's class list; ids merged")
                continue
            seen.append(n)
        return seen, warnings
    # Bare YOLO ids: keep them as they are. A numeric *name* such as "99999999999" is not an id (it would
    # allocate that many class names).
    if used and all(u.isdecimal() and len(u) <= 6 and str(int(u)) == u for u in used) \
            and max(int(u) for u in used) < _MAX_BARE_ID:
        return [str(i) for i in range(max(int(u) for u in used) + 1)], warnings
    return sorted(used, key=_natural_key), warnings


def _write_augmented(tmp, good, table, splits, out_names, order, n, seed, class_index, progress) -> tuple[int, int]:
    transform = augment_mod.build_transform()
    taken = {Path(nm).stem.lower() for nm in out_names}
    train = [i for i in order if splits[i] == "train"]
    n_img = n_box = 0
    for done, i in enumerate(train, 1):
        src = tmp / "images" / "train" / out_names[i]
        for k, data, suffix, boxes in augment_mod.augment_image(src, good[i].to_record(table), n, seed, transform):
            stem = f"{Path(out_names[i]).stem}__aug{k}"
            while stem.lower() in taken:
                stem += "_"
            taken.add(stem.lower())
            (tmp / "images" / "train" / f"{stem}{suffix}").write_bytes(data)
            h, w = _decoded_size(data)
            rec = Record(image=Path(stem + suffix), boxes=boxes, width=w, height=h)
            (tmp / "labels" / "train" / f"{stem}.txt").write_text(write.yolo_lines(rec, class_index), encoding="utf-8")
            n_img += 1
            n_box += len(boxes)
        if done % 50 == 0 or done == len(train):
            progress("augment", done, len(train))
    return n_img, n_box


def _decoded_size(data: bytes) -> tuple[int, int]:
    import io


    with pil_open(io.BytesIO(data)) as im:
        return im.size[1], im.size[0]
