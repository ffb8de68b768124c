"""YOLO reader: Ultralytics/Darknet txt labels in any of the usual folder layouts.

Layouts found in the wild, all handled by one rule (Ultralytics' own ``img2label_paths``: the
label of ``.../images/x.jpg`` is ``.../labels/x.txt``; without an ``images`` folder it sits beside
the image):

* ``images/{split}/`` + ``labels/{split}/`` (Ultralytics default, also nested under ``datasets/``)
* ``{split}/images/`` + ``{split}/labels/`` (Roboflow export)
* ``images/`` + ``labels/`` without splits, or images and ``.txt`` side by side in one folder
* a ``data.yaml`` / ``*.yaml`` naming the split folders (or ``.txt`` image lists) and the classes.

The split of an image is the first path component that names one (``train``, ``val``/``valid``/
``validation``, ``test``). A foreign absolute ``path:`` in the yaml (a common leftover from another
machine) is never followed: folders are looked up inside the source root only.

Boxes come out in pixels, so the reader reads each image's size from its header (no decode) and
applies EXIF orientation the way Ultralytics does when it loads the image. Ultralytics ``*.cache``
files are pickles from an untrusted source; they are never opened.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import yaml

from yolo_ft.prepare.imagehead import display_size
from yolo_ft.records import Box, Problem, Record
from yolo_ft.utils.paths import UnsafePathError, is_within, resolve_inside

NAME = "yolo"

# Ultralytics' IMG_FORMATS (8.4): extensions it will load as images.
IMAGE_SUFFIXES = frozenset(
    {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".jp2", ".avif", ".heic", ".heif"}
)
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
CLASS_LIST_FILES = ("classes.txt", "obj.names", "classes.names")


def normalize_split(name: str | None) -> str | None:
    """Map a folder/key name to train/val/test, or None when it is not a split name."""
    if name is None:
        return None
    return SPLIT_ALIASES.get(name.lower())


# --------------------------------------------------------------------------------------------- yaml
def find_yaml(source: Path) -> Path | None:
    """The dataset yaml: ``source`` itself, or the best ``*.yaml`` at the top of the folder."""
    if source.is_file():
        return source if source.suffix.lower() in {".yaml", ".yml"} else None
    if not source.is_dir():
        return None
    candidates = sorted(p for p in source.iterdir() if p.suffix.lower() in {".yaml", ".yml"} and p.is_file())
    candidates.sort(key=lambda p: (p.stem.lower() != "data", p.name))  # prefer data.yaml
    for p in candidates:
        cfg = _load_yaml(p)
        if isinstance(cfg, dict) and ("names" in cfg or "train" in cfg or "nc" in cfg):
            return p
    return None


def _load_yaml(path: Path) -> object:
    cfg, _ = _read_yaml(path)
    return cfg


def _read_yaml(path: Path) -> tuple[object, str | None]:
    """(parsed YAML, None) or (None, why it cannot be used). Always safe_load: tags never run code."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f), None
    except yaml.constructor.ConstructorError as e:
        return None, f"YAML tag refused ({e.problem}): data files may not contain Python tags like !!python/object"
    except yaml.YAMLError as e:
        return None, f"not valid YAML: {str(e)[:300]}"
    except UnicodeDecodeError:
        return None, "YAML file is not UTF-8 text"
    except OSError as e:
        return None, f"cannot read YAML file: {e.strerror or e}"


_MAX_CLASSES = 100_000  # more ids than this is a corrupt file, not a dataset (and would exhaust memory)


def _yaml_problems(source: Path) -> list[Problem]:
    """Dataset YAMLs that cannot be used: the source file itself, or a top-level *.yaml that does not parse.

    Silently skipping a broken data.yaml would lose the class names (ids would become names).
    """
    if source.is_file():
        files = [source] if source.suffix.lower() in {".yaml", ".yml"} else []
    elif source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in {".yaml", ".yml"} and p.is_file())
    else:
        files = []
    out = []
    for p in files:
        cfg, why = _read_yaml(p)
        if why is None and isinstance(cfg, dict):
            try:
                _names_from_yaml(cfg)
            except ValueError as e:
                why = str(e)
        if why is not None:
            out.append(Problem(str(p), why))
    return out


def _class_name(value: object, where: str) -> str:
    # A list or mapping here would be str()-ed into a "name"; with YAML aliases that string can be
    # gigabytes (a billion-laughs file), so only scalars are names.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise ValueError(f"names: {where} must be a non-empty text name, got {type(value).__name__}")
    return str(value)


def _names_from_yaml(cfg: dict) -> dict[int, str] | None:
    """id -> name from ``names`` (list or dict) or ``nc``; ValueError naming what is wrong."""
    names = cfg.get("names")
    if isinstance(names, list):
        if len(names) > _MAX_CLASSES:
            raise ValueError(f"names lists {len(names)} classes (more than {_MAX_CLASSES})")
        return {i: _class_name(n, f"entry {i}") for i, n in enumerate(names)}
    if isinstance(names, dict):
        out: dict[int, str] = {}
        for k, v in names.items():
            if isinstance(k, bool) or not isinstance(k, (int, str)) or not str(k).strip().isdigit() \
                    or int(k) >= _MAX_CLASSES:
                raise ValueError(f"names: key {str(k)[:40]!r} is not a class id (0, 1, 2, ...)")
            out[int(k)] = _class_name(v, f"class {k}")
        return dict(sorted(out.items()))
    if names is not None:
        raise ValueError(f"names must be a list or an id: name mapping, got {type(names).__name__}")
    nc = cfg.get("nc")
    if isinstance(nc, int) and not isinstance(nc, bool):
        if not 0 < nc <= _MAX_CLASSES:
            raise ValueError(f"nc must be between 1 and {_MAX_CLASSES}, got {nc}")
        return {i: f"class_{i}" for i in range(nc)}
    return None


def _names_from_class_file(root: Path) -> dict[int, str] | None:
    for name in CLASS_LIST_FILES:
        p = root / name
        if p.is_file():
            try:
                lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
            except (OSError, UnicodeDecodeError):
                return None
            return {i: n for i, n in enumerate(ln for ln in lines if ln)}
    return None


def _source_root(source: Path) -> Path:
    return source.parent if source.is_file() else source


def _dataset_root(yaml_path: Path, cfg: dict, source_root: Path) -> Path:
    """The folder the yaml's split entries are relative to, never outside ``source_root``.

    ``path:`` is used when it is relative and stays inside; a foreign absolute path is replaced
    by its last component under the yaml folder (``/home/x/.../datasets`` → ``./datasets``) if
    that exists, else by the yaml folder itself.
    """
    base = yaml_path.parent
    p = cfg.get("path")
    candidates: list[Path] = []
    if isinstance(p, str) and p.strip():
        pp = Path(p.strip())
        if not pp.is_absolute() and ".." not in pp.parts:
            candidates.append(base / pp)
        candidates.append(base / pp.name)
    candidates.append(base)
    for c in candidates:
        if _safe_exists(c, "is_dir") and is_within(c, source_root) and any(
            _split_target(c, v, source_root) for v in _split_values(cfg)
        ):
            return c
    return base


def _safe_exists(p: Path, test: str = "exists") -> bool:
    """``p.exists()`` / ``p.is_dir()`` for a path taken from a file: False when the OS refuses the name
    (e.g. a 300-character component raises ENAMETOOLONG), never an exception."""
    try:
        return bool(getattr(p, test)())
    except OSError:
        return False


def _split_values(cfg: dict) -> list[str]:
    out = []
    for key in ("train", "val", "validation", "valid", "test"):
        v = cfg.get(key)
        for item in v if isinstance(v, list) else [v]:
            if isinstance(item, str) and item.strip():
                out.append(item.strip())
    return out


def _split_target(root: Path, value: str, source_root: Path) -> Path | None:
    """Resolve one split entry safely inside the source root; None when it does not exist."""
    attempts = [value]
    v = value
    while v.startswith("../"):  # Roboflow writes ../train/images next to the yaml
        v = v[3:]
        attempts.append(v)
    if value.startswith("/"):  # another machine's absolute path: try its tail inside the root
        parts = Path(value).parts[1:]
        attempts += ["/".join(parts[-k:]) for k in range(min(3, len(parts)), 0, -1)]
    for a in attempts:
        try:
            rel = os.path.relpath(root / a, source_root) if not a.startswith("/") else a
            if rel.startswith(".."):
                continue
            p = resolve_inside(source_root, rel, what="split path")
        except (UnsafePathError, ValueError):
            continue
        if _safe_exists(p):
            return p
    return None


def class_names(source: Path, **_: object) -> list[str] | None:
    """Class names in id order (from the yaml, or classes.txt/obj.names); None when unknown.

    Optional reader hook: the pipeline keeps this order so ids are preserved exactly.
    """
    names = _id_to_name(Path(source))
    if not names:
        return None
    return [names[k] for k in sorted(names)]


def _id_to_name(source: Path) -> dict[int, str] | None:
    """id -> name from the dataset yaml, else classes.txt/obj.names; None when unknown or unreadable."""
    y = find_yaml(source)
    if y is not None:
        cfg = _load_yaml(y)
        if isinstance(cfg, dict):
            try:
                n = _names_from_yaml(cfg)
            except ValueError:  # read() reports it
                return None
            if n is not None:
                return n
    return _names_from_class_file(_source_root(source))


# ------------------------------------------------------------------------------------------ sniffing
def sniff(source: Path) -> bool:
    """A dataset yaml, or a folder with images whose labels are YOLO ``.txt`` files."""
    source = Path(source)
    if find_yaml(source) is not None:
        return True
    if not source.is_dir():
        return False
    for n, img in enumerate(_walk_images(source, source)):
        if n > 50:
            break
        if isinstance(img, Path) and label_path_for(img).is_file():
            return True
    return False


# --------------------------------------------------------------------------------------------- walk
def label_path_for(image: Path) -> Path:
    """Ultralytics' rule: ``/images/`` → ``/labels/`` (last occurrence), suffix → ``.txt``."""
    s = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in s:
        s = sb.join(s.rsplit(sa, 1))
    return Path(s).with_suffix(".txt")


def _walk_images(top: Path, root: Path) -> Iterator[Path | Problem]:
    """Image files under ``top`` in sorted order; symlinks leaving ``root`` become Problems."""
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        d = Path(dirpath)
        for fn in sorted(filenames):
            p = d / fn
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if p.is_symlink() and not is_within(p, root):
                yield Problem(str(p), "symlink points outside the source root; not followed")
                continue
            yield p
        # symlinked directories are not descended into (os.walk followlinks=False); report them
        for dn in list(dirnames):
            sub = d / dn
            if sub.is_symlink() and not is_within(sub, root):
                yield Problem(str(sub), "symlinked folder points outside the source root; not followed")


def _split_from_path(path: Path, root: Path) -> str | None:
    try:
        parts = path.relative_to(root).parts[:-1]
    except ValueError:
        return None
    for part in parts:
        s = normalize_split(part)
        if s:
            return s
    return None


def _image_list(list_file: Path, root: Path, source_root: Path) -> Iterator[Path | Problem]:
    """A split given as a .txt list of image paths (Darknet / Ultralytics style)."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        yield Problem(str(list_file), f"cannot read image list: {e}")
        return
    for ln in lines:
        ln = ln.strip()
        if not ln:
            continue
        rel = ln[2:] if ln.startswith("./") else ln
        try:
            base_rel = os.path.relpath(list_file.parent, source_root)
            cand = rel if base_rel == "." else f"{base_rel}/{rel}"
            p = resolve_inside(source_root, cand, what="image path")
            if not _safe_exists(p):
                p = resolve_inside(source_root, rel, what="image path")
            p.exists()  # a name the OS refuses (too long, ...) raises here: reported below, never a crash
        except OSError as e:
            yield Problem(str(list_file), f"cannot use listed image path {rel[:80]!r}: {e.strerror or e}")
            continue
        except UnsafePathError as e:
            yield Problem(str(list_file), f"{e}")
            continue
        yield p


# --------------------------------------------------------------------------------------- image size
def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as Ultralytics sees the image: header only, EXIF orientation applied."""
    return display_size(path)


# ---------------------------------------------------------------------------------------- labels
def parse_label_file(path: Path, width: int, height: int, names: dict[int, str] | None) -> list[Box] | str:
    """Boxes of one label file in pixels, or a reason string when the file is invalid.

    A line is ``class cx cy w h`` (normalised) or a polygon ``class x1 y1 x2 y2 ...`` (segment
    labels; its bounding box is used, as Ultralytics does for detection).
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "label file is not UTF-8 text"
    except OSError as e:
        return f"cannot read label file: {e.strerror or e}"
    boxes: list[Box] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        n = len(tokens)
        if n != 5 and (n < 7 or n % 2 == 0):
            return f"line {lineno}: expected 'class cx cy w h' (5 values) or a polygon, got {n} values"
        try:
            cls_f = float(tokens[0])
            vals = [float(t) for t in tokens[1:]]
        except ValueError:
            return f"line {lineno}: non-numeric value in {line.strip()!r}"
        if not math.isfinite(cls_f) or cls_f != int(cls_f) or cls_f < 0:
            return f"line {lineno}: class id {tokens[0]!r} is not a non-negative integer"
        if not all(math.isfinite(v) for v in vals):
            return f"line {lineno}: NaN or infinite coordinate"
        cls = int(cls_f)
        if names is not None:
            if cls not in names:
                return f"line {lineno}: class id {cls} is not in the dataset's names ({len(names)} classes)"
            label = names[cls]
        else:
            label = str(cls)
        if n == 5:
            cx, cy, bw, bh = vals
            x1, x2 = (cx - bw / 2) * width, (cx + bw / 2) * width
            y1, y2 = (cy - bh / 2) * height, (cy + bh / 2) * height
        else:
            xs, ys = vals[0::2], vals[1::2]
            x1, x2 = min(xs) * width, max(xs) * width
            y1, y2 = min(ys) * height, max(ys) * height
        boxes.append(Box(x1, y1, x2, y2, label))
    return boxes


# ------------------------------------------------------------------------------------------- read
def _iter_image_sources(source: Path, source_root: Path) -> Iterator[tuple[Path | Problem, str | None]]:
    """(image or Problem, split from the yaml) in a deterministic order."""
    y = find_yaml(source)
    cfg = _load_yaml(y) if y is not None else None
    if isinstance(cfg, dict) and _split_values(cfg):
        root = _dataset_root(y, cfg, source_root)
        seen: set[str] = set()  # str, not Path: this set grows with the dataset
        for key in ("train", "val", "validation", "valid", "test"):
            v = cfg.get(key)
            split = normalize_split(key)
            for item in v if isinstance(v, list) else [v]:
                if not isinstance(item, str) or not item.strip():
                    continue
                target = _split_target(root, item.strip(), source_root)
                if target is None:
                    yield Problem(str(y), f"{key}: {item!r} not found inside the source folder"), None
                    continue
                it = _image_list(target, root, source_root) if target.is_file() else _walk_images(target, source_root)
                for img in it:
                    if isinstance(img, Path):
                        if str(img) in seen:
                            continue
                        seen.add(str(img))
                    yield img, split
        return
    top = source_root if source.is_dir() or source.is_file() else source
    for img in _walk_images(top, source_root):
        yield img, (_split_from_path(img, source_root) if isinstance(img, Path) else None)


def read(source: Path, *, images: Path | None = None, masks: Path | None = None, **options: object) -> Iterator[Record | Problem]:
    """Stream one Record per image (or a Problem per file that cannot be used).

    An empty label file is an annotated negative; an image without a label file is yielded
    with ``annotated=False`` (reported by validation, never silently turned into a negative).
    A label file without an image is a Problem. With ``images`` the images are walked there and
    each label is looked up at the same relative path (``.txt``) under ``source``.
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() not in {".yaml", ".yml"}:
        yield Problem(str(source), "a YOLO source is a dataset folder or its data.yaml; this file is neither "
                                   "(archives are not extracted: unpack it and pass the folder)")
        return
    yaml_problems = _yaml_problems(source)
    if yaml_problems:
        yield from yaml_problems
        return
    source_root = _source_root(source)
    names = _id_to_name(source)
    seen_labels: set[str] = set()  # str, not Path: this set grows with the dataset
    label_dirs: set[Path] = set()
    if images is not None:
        images = Path(images)
        pairs: Iterator[tuple[Path | Problem, str | None]] = (
            (img, _split_from_path(img, images) if isinstance(img, Path) else None)
            for img in _walk_images(images, images)
        )
    else:
        pairs = _iter_image_sources(source, source_root)
    for img, split in pairs:
        if isinstance(img, Problem):
            if Path(img.file).suffix.lower() in IMAGE_SUFFIXES:  # its label is not an orphan
                seen_labels.add(str(label_path_for(Path(img.file))))
            yield img
            continue
        if images is not None:
            lbl = (source_root / img.relative_to(images)).with_suffix(".txt")
        else:
            lbl = label_path_for(img)
        label_dirs.add(lbl.parent)
        has_label = lbl.is_file()
        if has_label:
            seen_labels.add(str(lbl))
        try:
            w, h = image_size(img)
        except Exception:  # noqa: BLE001 - unreadable header: validation names the file and reason
            yield Record(image=img, width=None, height=None, source=lbl if has_label else None,
                         split=split, annotated=has_label)
            continue
        if not has_label:
            yield Record(image=img, width=w, height=h, split=split, annotated=False)
            continue
        parsed = parse_label_file(lbl, w, h, names)
        if isinstance(parsed, str):
            yield Problem(str(lbl), parsed)
            continue
        yield Record(image=img, boxes=parsed, width=w, height=h, source=lbl, split=split, annotated=True,
                     exif_transposed=True)
    yield from _orphan_labels(label_dirs, seen_labels, source_root)


def _orphan_labels(label_dirs: set[Path], seen: set[str], root: Path) -> Iterator[Problem]:
    """Label files nobody claimed: in a ``labels`` folder any .txt, beside images only YOLO-looking ones."""
    for d in sorted(label_dirs):
        if not d.is_dir():
            continue
        try:
            dedicated = "labels" in d.relative_to(root).parts
        except ValueError:
            dedicated = d.name == "labels"
        img_dir = _image_dir_for(d)
        stems = {Path(f).stem for f in os.listdir(img_dir) if Path(f).suffix.lower() in IMAGE_SUFFIXES} \
            if img_dir.is_dir() else set()
        for fn in sorted(os.listdir(d)):
            p = d / fn
            if p.suffix != ".txt" or str(p) in seen or fn in CLASS_LIST_FILES or not p.is_file():
                continue
            if p.stem in stems:
                continue  # its image exists but the yaml's image list left it out: not ours to judge
            if dedicated or _looks_like_yolo(p):
                yield Problem(str(p), "label file has no matching image")


def _image_dir_for(label_dir: Path) -> Path:
    s = str(label_dir) + os.sep
    sa, sb = f"{os.sep}labels{os.sep}", f"{os.sep}images{os.sep}"
    return Path(sb.join(s.rsplit(sa, 1))) if sa in s else label_dir


def _looks_like_yolo(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline().split()
    except (OSError, UnicodeDecodeError):
        return False
    if len(first) != 5:
        return False
    try:
        [float(t) for t in first]
    except ValueError:
        return False
    return True
