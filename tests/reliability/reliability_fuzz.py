"""Generators of hostile annotation sources, one per reader, and the property every case must satisfy.

Shared by the CI fuzz tests (tests/reliability/test_reliability_fuzz.py, a modest example budget),
the corpus replay (test_reliability_corpus.py) and the long run (bench/bench_fuzz.py).

A *case* is a dict ``relative path -> bytes`` (or ``("symlink", target)``) written under
``WORK/src``; ``WORK/canary.png`` and ``WORK/canary_dir/`` sit *outside* the source root, so a
``../canary.png`` or an absolute path in an annotation is a real escape attempt. The property
(:func:`check_case`):

* ``reader.read(source)`` never raises; it yields only Records and Problems; every Problem names a
  file inside the source root with a non-empty reason;
* ``prepare(source, out)`` (strict) either writes a complete, valid dataset or raises
  :class:`~yolo_ft.records.YoloFtError` (``InvalidDatasetError`` with every problem listed) and then
  writes nothing at all (no ``out``, no temp sibling);
* with ``skip_invalid=True`` the same holds, and what is written is a valid YOLO dataset;
* nothing outside the source root (the canary) is ever read into the output.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import yaml
from hypothesis import strategies as st
from PIL import Image

from yolo_ft.records import Problem, Record

CANARY_ABS = "__CANARY_ABS__"  # replaced by the absolute path of WORK/canary.png when a case is written
DEEP = "__DEEP__"  # replaced by 5 000 levels of nesting in the serialised text
FORMATS = ("yolo", "coco", "voc", "labelme", "cvat", "masks", "dicom")

# ---------------------------------------------------------------------------------------- images
_IMG_CACHE: dict[tuple, bytes] = {}


def tiny_image(i: int, fmt: str = "PNG", size: tuple[int, int] = (32, 24), mode: str = "RGB") -> bytes:
    """A small distinct image (colour and a bright square depend on ``i``): no two are duplicates."""
    key = (i, fmt, size, mode)
    if key not in _IMG_CACHE:
        rng = np.random.default_rng(i)
        a = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        im = Image.fromarray(a, "RGB").convert(mode)
        buf = io.BytesIO()
        im.save(buf, fmt)
        _IMG_CACHE[key] = buf.getvalue()
    return _IMG_CACHE[key]


def canary_bytes() -> bytes:
    return tiny_image(999_999)


# --------------------------------------------------------------------------------- nasty values
NASTY_STRINGS = [
    "", " ", "img0.png", "img1.jpg", "img 0.png", "../canary.png", "../../canary.png", CANARY_ABS,
    "/etc/passwd", "..\\canary.png", "C:\\Windows\\win.ini", "file:///etc/passwd", "img0.png\x00.txt",
    "ü", "腎臓", "🙂", "\u202e", "\ud800", "a" * 300, "b" * 300 + ".png", "NaN", "nan", "inf", "-inf", "1e400", "-1e400", "12px",
    "0x10", "-5", "5", "0", "1", "0.5", "1,5", "%s%n", "<", "&", "]]>", "\n", "\t", "null", "true", "[]", "{}",
    "canary_dir/x.png", "sub/../img0.png", "./img0.png", "IMG0.PNG", "img0", ".png", DEEP,
]
NASTY_NUMBERS = [
    float("nan"), float("inf"), float("-inf"), -1, 0, -0.0, 1e308, -1e308, 10**30, 2**63, -(2**63), 2**64 + 1,
    1e-320, 0.5, 1, 2, 3, 5, 8, 16, 23, 24, 31, 32, 33, 100, 1.0000001, 0.9999999, 1e6, 99999999,
]

nasty_string = st.one_of(st.sampled_from(NASTY_STRINGS), st.text(max_size=12))
nasty_number = st.one_of(
    st.sampled_from(NASTY_NUMBERS),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-5, 40),
)
nasty_scalar = st.one_of(st.none(), st.booleans(), nasty_number, nasty_string)
nasty_json = st.recursive(
    nasty_scalar,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
        ["id", "name", "file_name", "image_id", "category_id", "bbox", "width", "height", "label", "points",
         "shape_type", "imagePath", "imageData", "shapes", "x", "y"]) | st.text(max_size=6), c, max_size=4),
    max_leaves=12,
)


def _paths(obj, out=None):
    """Every (container, key) in a JSON-like tree."""
    out = [] if out is None else out
    if isinstance(obj, dict):
        for k in list(obj):
            out.append((obj, k))
            _paths(obj[k], out)
    elif isinstance(obj, list):
        for i in range(len(obj)):
            out.append((obj, i))
            _paths(obj[i], out)
    return out


@st.composite
def mutated(draw, base: object, max_mutations: int = 6):
    """``base`` with a few random replacements, deletions, duplications and wrappings."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, max_mutations))):
        paths = _paths(doc)
        if not paths:
            break
        parent, key = paths[draw(st.integers(0, len(paths) - 1))]
        op = draw(st.sampled_from(["replace", "replace", "number", "delete", "duplicate", "wrap", "swap_type"]))
        if op == "replace":
            parent[key] = draw(nasty_json)
        elif op == "number":
            parent[key] = draw(nasty_number)
        elif op == "delete":
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif op == "duplicate":
            if isinstance(parent, list):
                parent.append(copy.deepcopy(parent[key]))
            else:
                parent[key] = [parent[key], copy.deepcopy(parent[key])]
        elif op == "wrap":
            parent[key] = {"value": parent[key]} if draw(st.booleans()) else [parent[key]]
        else:
            v = parent[key]
            parent[key] = str(v) if not isinstance(v, str) else (len(v) if draw(st.booleans()) else None)
    return doc


def dumps_json(doc: object) -> str:
    text = json.dumps(doc, allow_nan=True, ensure_ascii=False)
    return text.replace(json.dumps(DEEP), "[" * 5_000 + "]" * 5_000)


@st.composite
def byte_damage(draw, data: bytes) -> bytes:
    """Most cases keep the bytes; some are truncated, get a BOM, invalid UTF-8, NULs or UTF-16."""
    op = draw(st.sampled_from(["keep"] * 14 + ["truncate", "bom", "badutf8", "nul", "utf16", "empty", "flip"]))
    if op == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if op == "bom":
        return b"\xef\xbb\xbf" + data
    if op == "badutf8":
        i = draw(st.integers(0, len(data)))
        return data[:i] + b"\xff\xfe\xc3" + data[i:]
    if op == "nul":
        i = draw(st.integers(0, len(data)))
        return data[:i] + b"\x00" + data[i:]
    if op == "utf16":
        try:
            return data.decode("utf-8").encode("utf-16")
        except UnicodeDecodeError:
            return data
    if op == "empty":
        return b""
    if op == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    return data


def _text_bytes(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------------------------ images set
@st.composite
def image_files(draw, folder: str = "", n_max: int = 3) -> dict[str, object]:
    """0..n real tiny images, sometimes damaged, a symlink to the canary, or a huge header."""
    files: dict[str, object] = {}
    for i in range(draw(st.integers(0, n_max))):
        kind = draw(st.sampled_from(["png", "png", "jpg", "jpg", "bmp", "zero", "truncated", "notimage", "link"]))
        name = f"{folder}img{i}." + ("jpg" if kind in ("jpg", "truncated") else "bmp" if kind == "bmp" else "png")
        if kind == "png":
            files[name] = tiny_image(i)
        elif kind == "jpg":
            files[name] = tiny_image(i, "JPEG")
        elif kind == "bmp":
            files[name] = tiny_image(i, "BMP")
        elif kind == "zero":
            files[name] = b""
        elif kind == "truncated":
            data = tiny_image(i, "JPEG")
            files[name] = data[: len(data) // 2]
        elif kind == "notimage":
            files[name] = b"<html>not an image</html>"
        else:
            files[name] = ("symlink", "CANARY")
    return files


# ------------------------------------------------------------------------------------------ yolo
_LABEL_TOKEN = st.one_of(
    st.sampled_from(["0", "1", "2", "0.5", "0.25", "0.1", "1.0", "0.0", "1e-9", "-0.1", "1.5", "nan", "inf", "-inf",
                     "1e400", "0x1", "1_0", "٣", "0.5.5", "", "2.0", "-0", "9" * 40, "1e-400"]),
    st.floats(-2, 3).map(lambda f: f"{f:.6g}"),
    st.integers(-3, 300).map(str),
    st.text(max_size=5),
)


@st.composite
def yolo_label_text(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.integers(0, 3)):  # mostly well-formed numbers, for the checks past parsing
            n = draw(st.sampled_from([5, 5, 5, 7, 9, 4, 6, 1]))
            tokens = [draw(st.sampled_from(["0", "1", "2"]))] + [
                draw(st.floats(-0.2, 1.2).map(lambda f: f"{f:.4f}")) for _ in range(n - 1)]
        else:
            tokens = draw(st.lists(_LABEL_TOKEN, max_size=9))
        lines.append(draw(st.sampled_from([" ", "\t", "  "])).join(tokens))
    sep = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return draw(byte_damage(_text_bytes(sep.join(lines))))


YOLO_YAML_BASE = {"path": ".", "train": "images/train", "val": "images/val", "names": {0: "a", 1: "b"}}
HOSTILE_YAML = [
    "train: images/train\nval: images/val\nnames: !!python/object/apply:os.mkdir ['{canary_dir}/pwned']\n",
    "!!python/object/new:os.system ['echo pwned']\n",
    "train: !!python/name:os.system\nnames: {{0: a}}\n",
    "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "train: images/train\nval: images/val\nnames: [*h]\n",
    "train: images/train\nval: images/val\nnames: {{0: a\n",
    "train: [images/train, images/train]\nval: images/train\nnames: [a, a]\n",
    "train: {canary_dir}\nval: ../canary_dir\nnames: [a]\n",
    "train: images/train\nval: images/val\nnc: 100000000\n",
    "train: images/train\nval: images/val\nnc: -3\nnames: {{-1: a, x: b, 1.5: c, null: d}}\n",
]


@st.composite
def yolo_case(draw) -> tuple[dict, str]:
    files: dict[str, object] = {}
    split_dirs = draw(st.sampled_from([["train", "val"], ["train"], [""]]))
    for s in split_dirs:
        img_dir = f"images/{s}/" if s else "images/"
        lbl_dir = f"labels/{s}/" if s else "labels/"
        imgs = draw(image_files(img_dir))
        files.update(imgs)
        for name in imgs:
            stem = Path(name).stem
            if draw(st.integers(0, 5)):  # usually a label; sometimes an image without one
                files[f"{lbl_dir}{stem}.txt"] = draw(yolo_label_text())
        if draw(st.integers(0, 4)) == 0:
            files[f"{lbl_dir}orphan.txt"] = draw(yolo_label_text())
    yaml_kind = draw(st.sampled_from(["none", "mutated", "mutated", "hostile", "list"]))
    if yaml_kind == "mutated":
        doc = draw(mutated(YOLO_YAML_BASE, 4))
        try:
            files["data.yaml"] = draw(byte_damage(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass")))
        except Exception:  # noqa: BLE001 - a tree PyYAML cannot dump: write its repr instead
            files["data.yaml"] = _text_bytes(repr(doc))
    elif yaml_kind == "hostile":
        files["data.yaml"] = draw(st.sampled_from(HOSTILE_YAML)).encode()
    elif yaml_kind == "list":
        entries = draw(st.lists(st.sampled_from(["images/train/img0.png", "./images/train/img1.jpg", "../canary.png",
                                                 CANARY_ABS, "images/train/missing.png", "", "n" * 300 + ".png"]),
                                max_size=4))
        files["train.txt"] = "\n".join(entries).encode()
        files["data.yaml"] = b"train: train.txt\nval: train.txt\nnames: [a, b]\n"
    if draw(st.integers(0, 5)) == 0:
        files["classes.txt"] = draw(byte_damage(b"a\nb\n"))
    if draw(st.integers(0, 6)) == 0:
        files["labels/train.cache"] = b"\x80\x04not really a pickle"
    return files, "."


# ------------------------------------------------------------------------------------------ coco
def coco_base(n_images: int) -> dict:
    return {
        "images": [{"id": i + 1, "file_name": f"img{i}.png", "width": 32, "height": 24} for i in range(n_images)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [2, 3, 10, 8],
                         "iscrowd": 0, "area": 80} for i in range(n_images)],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }


@st.composite
def coco_case(draw) -> tuple[dict, str]:
    imgs = draw(image_files())
    files: dict[str, object] = dict(imgs)
    doc = draw(mutated(coco_base(max(1, len(imgs))), 6))
    if draw(st.integers(0, 9)) == 0:
        doc = draw(nasty_json)
    text = dumps_json(doc)
    name = draw(st.sampled_from(["annotations.json", "train.json", "instances_val2017.json"]))
    files[name] = draw(byte_damage(_text_bytes(text)))
    return files, "."


# ----------------------------------------------------------------------------------------- xml
def _xml_value(draw) -> str:
    return draw(st.one_of(nasty_string, nasty_number.map(str), st.sampled_from(["10", "2", "30", "20", "0", "1"])))


XML_HEADERS = [
    "",
    '<?xml version="1.0"?>\n',
    '<?xml version="1.0" encoding="latin-1"?>\n',
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;'
    '&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    '<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">'
    '<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">'
    '<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">'
    '<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">'
    '<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">'
    '<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>\n',
    '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n',
    '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:1/evil.dtd"> %p;]>\n',
    '<?xml version="1.0"?>\n<!DOCTYPE x SYSTEM "http://127.0.0.1:1/evil.dtd">\n',
]
xml_header = st.one_of(st.sampled_from(XML_HEADERS[:2]), st.sampled_from(XML_HEADERS))
XML_ENTITY_USES = ["&lol9;", "&xxe;", "&amp;", "&#0;", "&#x1F642;", "&undefined;"]


@st.composite
def xml_text(draw) -> str:
    """Escaped text normally; sometimes raw (injected markup) or an entity reference."""
    v = _xml_value(draw)
    r = draw(st.integers(0, 9))
    if r == 0:
        return v  # raw: may break the document
    if r == 1:
        return draw(st.sampled_from(XML_ENTITY_USES))
    if v == DEEP:
        return "<a>" * 5_000 + "</a>" * 5_000
    return escape(v)


@st.composite
def voc_case(draw) -> tuple[dict, str]:
    layout = draw(st.sampled_from(["flat", "voc"]))
    ann_dir, img_dir = ("", "") if layout == "flat" else ("Annotations/", "JPEGImages/")
    imgs = draw(image_files(img_dir))
    files: dict[str, object] = dict(imgs)
    for i, img in enumerate(imgs or {f"{img_dir}img0.png": None}):
        name = Path(img).name

        def val(default: str) -> str:
            return default if draw(st.integers(0, 11)) else draw(xml_text())

        objects = ""
        for _ in range(draw(st.integers(0, 3))):
            objects += (f"<object><name>{val('a')}</name><difficult>{val('0')}</difficult><bndbox>"
                        f"<xmin>{val('3')}</xmin><ymin>{val('4')}</ymin><xmax>{val('20')}</xmax><ymax>{val('15')}</ymax>"
                        f"</bndbox></object>")
            if draw(st.integers(0, 5)) == 0:
                objects += "<object><name>b</name></object>"
        doc = (f"{draw(xml_header)}<annotation><folder>{val('x')}</folder>"
               f"<filename>{val(name)}</filename><path>{val('/home/pi/' + name)}</path>"
               f"<size><width>{val('32')}</width><height>{val('24')}</height><depth>3</depth></size>{objects}"
               f"</annotation>")
        if draw(st.integers(0, 7)) == 0:
            doc = doc.replace("<annotation>", "<annotations>").replace("</annotation>", "</annotations>")
        files[f"{ann_dir}{Path(name).stem}.xml"] = draw(byte_damage(_text_bytes(doc)))
    if layout == "voc" and draw(st.booleans()):
        stems = [Path(n).stem for n in imgs] + ["../canary", "missing"]
        files["ImageSets/Main/train.txt"] = "\n".join(draw(st.lists(st.sampled_from(stems), max_size=4))).encode()
        files["ImageSets/Main/val.txt"] = "\n".join(draw(st.lists(st.sampled_from(stems), max_size=4))).encode()
    return files, "."


@st.composite
def cvat_case(draw) -> tuple[dict, str]:
    imgs = draw(image_files("images/"))
    files: dict[str, object] = dict(imgs)

    def attr(default: str) -> str:
        return quoteattr(default if draw(st.integers(0, 11)) else _xml_value(draw).replace("\x00", ""))

    body = ""
    for i, img in enumerate(imgs or {"images/img0.png": None}):
        shapes = ""
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["box", "polygon", "ellipse", "mask", "points", "tag"]))
            if kind == "box":
                shapes += f'<box label={attr("a")} xtl={attr("2")} ytl={attr("3")} xbr={attr("20")} ybr={attr("15")}/>'
            elif kind == "polygon":
                shapes += f'<polygon label={attr("b")} points={attr("1,1;10,2;5,9")}/>'
            elif kind == "ellipse":
                shapes += f'<ellipse label={attr("a")} cx={attr("10")} cy={attr("10")} rx={attr("3")} ry={attr("2")}/>'
            elif kind == "mask":
                shapes += (f'<mask label={attr("a")} rle="1,2" left={attr("1")} top={attr("2")} width={attr("5")} '
                           f'height={attr("4")}/>')
            else:
                shapes += f'<{kind} label={attr("a")} points="1,1"/>'
        body += (f'<image id={attr(str(i))} name={attr(Path(img).name)} width={attr("32")} height={attr("24")} '
                 f'subset={attr("train")}>{shapes}</image>')
        if draw(st.integers(0, 7)) == 0:
            body += draw(xml_text())
    labels = "".join(f"<label><name>{n}</name></label>" for n in draw(st.sampled_from([["a", "b"], ["a"], []])))
    doc = (f"{draw(xml_header)}<annotations><version>1.1</version><meta><task><labels>{labels}"
           f"</labels></task></meta>{body}</annotations>")
    files["annotations.xml"] = draw(byte_damage(_text_bytes(doc)))
    return files, "."


# --------------------------------------------------------------------------------------- labelme
def labelme_base(name: str) -> dict:
    return {
        "version": "5.2.1", "flags": {},
        "shapes": [
            {"label": "a", "points": [[2, 3], [20, 15]], "shape_type": "rectangle", "group_id": None, "flags": {}},
            {"label": "b", "points": [[1, 1], [10, 2], [5, 9]], "shape_type": "polygon", "flags": {}},
            {"label": "a", "points": [[10, 10], [13, 14]], "shape_type": "circle", "flags": {}},
        ],
        "imagePath": name, "imageData": None, "imageHeight": 24, "imageWidth": 32,
    }


@st.composite
def labelme_case(draw) -> tuple[dict, str]:
    import base64

    imgs = draw(image_files())
    files: dict[str, object] = dict(imgs)
    for i, img in enumerate(imgs or {"img0.png": None}):
        doc = draw(mutated(labelme_base(Path(img).name), 5))
        if isinstance(doc, dict) and draw(st.integers(0, 4)) == 0:
            raw = draw(st.sampled_from([tiny_image(50 + i), tiny_image(50 + i)[:40], b"GIF89a....", b"",
                                        tiny_image(50 + i, "JPEG")]))
            enc = base64.b64encode(raw).decode()
            doc["imageData"] = draw(st.sampled_from([enc, enc[:-3], "!!notbase64!!", enc + "\n" + enc[:8]]))
        files[f"ann{i}.json"] = draw(byte_damage(_text_bytes(dumps_json(doc))))
    return files, "."


# ----------------------------------------------------------------------------------------- masks
@st.composite
def mask_array(draw, h: int, w: int) -> bytes:
    kind = draw(st.sampled_from(["L", "L", "P", "1", "RGB", "I;16", "LA", "zero", "garbage"]))
    if kind == "zero":
        return b""
    if kind == "garbage":
        return b"\x89PNG\r\n\x1a\n" + bytes(draw(st.binary(max_size=40)))
    mh, mw = (h, w) if draw(st.integers(0, 5)) else (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    pattern = draw(st.sampled_from(["blobs", "noise", "empty", "full", "pixel", "checker"]))
    a = np.zeros((mh, mw), np.uint8)
    if pattern == "blobs":
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, mh), rng.integers(0, mw)
            a[y:y + rng.integers(1, 6), x:x + rng.integers(1, 6)] = rng.choice([1, 2, 200, 255])
    elif pattern == "noise":
        a = rng.integers(0, 256, (mh, mw), dtype=np.uint8)
    elif pattern == "full":
        a[:] = 255
    elif pattern == "pixel":
        a[rng.integers(0, mh), rng.integers(0, mw)] = 255
    elif pattern == "checker":
        a[::2, ::2] = 255
    if kind == "I;16":
        im = Image.fromarray(a.astype(np.uint16) * 257)
    elif kind == "RGB":
        im = Image.fromarray(np.stack([a, a[::-1] if draw(st.booleans()) else a, a], -1), "RGB")
    elif kind == "P":
        im = Image.fromarray(a, "L").convert("P")
    elif kind == "LA":
        im = Image.fromarray(np.stack([a, a], -1), "LA")
    else:
        im = Image.fromarray(a, "L").convert(kind)
    buf = io.BytesIO()
    fmt = draw(st.sampled_from(["PNG", "PNG", "BMP", "TIFF"]))
    im.save(buf, "PNG" if kind in ("LA", "I;16") and fmt == "BMP" else fmt)
    return buf.getvalue()


MASK_OPTIONS = st.one_of(st.just({}), st.just({}), st.fixed_dictionaries({}, optional={
    "threshold": st.one_of(nasty_number, st.sampled_from(["127", "x", None])),
    "connectivity": st.sampled_from([4, 8, 0, 6, "8", "x", None, 8.0]),
    "min_area": st.one_of(st.sampled_from([1, 0, -1, 10**9, "3", "x", None, 2.5]), st.integers(-2, 50)),
    "mask_class": st.one_of(nasty_string, st.none()),
}))


@st.composite
def masks_case(draw) -> tuple[dict, str, dict]:
    imgs = draw(image_files("images/"))
    files: dict[str, object] = dict(imgs)
    for name in imgs:
        r = draw(st.integers(0, 6))
        if r == 0:
            continue  # image without a mask
        suffix = draw(st.sampled_from(["", "_mask"]))
        ext = draw(st.sampled_from([".png", ".png", ".bmp", ".tif"]))
        files[f"masks/{Path(name).stem}{suffix}{ext}"] = draw(mask_array(24, 32))
    if draw(st.integers(0, 4)) == 0:
        files["masks/lonely.png"] = draw(mask_array(24, 32))
    if not any(k.startswith("masks/") for k in files):
        files["masks/.keep.png"] = draw(mask_array(24, 32))
    return files, ".", draw(MASK_OPTIONS)


# ----------------------------------------------------------------------------------------- dicom
def mostly(value, others) -> st.SearchStrategy:
    """``value`` about 8 times in 10, else one of ``others``: damage one field at a time."""
    return st.sampled_from([value] * (2 * len(others)) + list(others))


@st.composite
def dicom_bytes(draw, seed: int) -> bytes:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

    rng = np.random.default_rng(seed)
    rows, cols = draw(mostly((24, 32), [(1, 1), (0, 32), (65535, 2), (8, 8)]))
    bits = draw(mostly(16, [8, 1, 12, 32, 0]))
    samples = draw(mostly(1, [3, 0]))
    frames = draw(mostly(None, [1, 2, 0]))
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ts = draw(mostly(ExplicitVRLittleEndian, [ImplicitVRLittleEndian, JPEGBaseline8Bit]))
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID = draw(st.sampled_from(["P1", "", "腎臓", "../x", "a" * 64]))
    ds.Modality = "CT"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = draw(mostly("MONOCHROME2", ["MONOCHROME1", "RGB", "PALETTE COLOR", "XYZ"]))
    ds.BitsAllocated = bits
    ds.BitsStored = draw(mostly(bits, [12, 0, 40]))
    ds.HighBit = max(0, ds.BitsStored - 1)
    ds.PixelRepresentation = draw(mostly(0, [1, 2]))
    if frames is not None:
        ds.NumberOfFrames = frames
    patches: dict[bytes, bytes] = {}
    for k, tag in enumerate(("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth")):
        if draw(st.integers(0, 2)):
            # written as a valid placeholder, then patched in the bytes: pydicom refuses to hold e.g. 'abc'
            placeholder = f"{k + 1}" * 8
            ds.add_new(tag, "DS", placeholder)
            value = draw(st.sampled_from(["1", "0", "-1024", "NaN", "inf", "1e400", "abc", "", "40\\400",
                                          "0.0000001", "-1e30", "\x00\x00"]))
            patches[placeholder.encode()] = value.encode("latin-1").ljust(8)[:8]
    n_bytes = rows * cols * max(samples, 1) * max(bits, 8) // 8 * (frames or 1)
    n_bytes = min(n_bytes, 4096)
    n_bytes = draw(mostly(n_bytes, [max(0, n_bytes // 2), n_bytes + 7, 0]))
    ds.PixelData = rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    buf = io.BytesIO()
    from pydicom import config

    old = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        ds.save_as(buf, enforce_file_format=True)
    except Exception:  # noqa: BLE001 - a header pydicom refuses to write: write a truncated preamble instead
        return b"\x00" * 128 + b"DICM" + bytes(draw(st.binary(max_size=64)))
    finally:
        config.settings.writing_validation_mode = old
    data = buf.getvalue()
    for a, b in patches.items():
        data = data.replace(a, b)
    return data


@st.composite
def dicom_case(draw) -> tuple[dict, str, dict]:
    files: dict[str, object] = {}
    for i in range(draw(st.integers(1, 3))):
        data = draw(dicom_bytes(i))
        data = draw(mostly(data, [data[: len(data) // 2], data[:140]]))
        files[f"slice{i}.dcm"] = data
        if draw(st.integers(0, 3)):
            files[f"slice{i}.txt"] = draw(yolo_label_text())
    if draw(st.integers(0, 3)) == 0:
        a = np.random.default_rng(7).integers(0, 4000, (24, 32)).astype(np.uint16)
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "PNG")
        files["ct16.png"] = buf.getvalue() if draw(st.booleans()) else buf.getvalue()[:60]
        files["ct16.txt"] = draw(yolo_label_text())
    if draw(st.integers(0, 4)) == 0:
        files["classes.txt"] = draw(byte_damage(b"stone\ncyst\n"))
    options = {}
    if draw(st.integers(0, 3)) == 0:
        options["window"] = draw(st.one_of(st.sampled_from(["40,400", "kidney-stone", "minmax", "auto", "0,0", "nan,1",
                                                            "a,b", "1,2,3", "-1e400,5", ""]), nasty_string))
    return files, ".", options


# ----------------------------------------------------------------------------------- strategies
def _no_opts(s):
    return s.map(lambda t: (t[0], t[1], {}))


CASES: dict[str, st.SearchStrategy] = {
    "yolo": _no_opts(yolo_case()),
    "coco": _no_opts(coco_case()),
    "voc": _no_opts(voc_case()),
    "labelme": _no_opts(labelme_case()),
    "cvat": _no_opts(cvat_case()),
    "masks": masks_case(),
    "dicom": dicom_case(),
}


# ------------------------------------------------------------------------------------ write case
def write_case(work: Path, files: dict) -> Path:
    """Write a case under ``work/src`` (plus the canary outside it); returns the source root."""
    work = Path(work)
    src = work / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    canary = work / "canary.png"
    canary.write_bytes(canary_bytes())
    (work / "canary_dir").mkdir(exist_ok=True)
    shutil.copyfile(canary, work / "canary_dir" / "x.png")
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, tuple):
            target = canary if data[1] == "CANARY" else Path(data[1])
            os.symlink(target, p)
            continue
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        data = data.replace(CANARY_ABS.encode(), str(canary).encode())
        data = data.replace(b"{canary_dir}", str(work / "canary_dir").encode())
        p.write_bytes(data)
    return src


def load_case_dir(case_dir: Path) -> tuple[dict, dict]:
    """A corpus case folder back into (files, options): every file but ``case.json`` is a source file."""
    meta = json.loads((case_dir / "case.json").read_text(encoding="utf-8"))
    files: dict[str, object] = {}
    for p in sorted(case_dir.rglob("*")):
        if p.is_file() and p.name != "case.json":
            files[p.relative_to(case_dir).as_posix()] = p.read_bytes()
    for rel in meta.get("symlinks_to_canary", []):
        files[rel] = ("symlink", "CANARY")
    return files, meta


def save_case(corpus: Path, fmt: str, name: str, files: dict, options: dict, note: str = "",
              expect: list[str] | None = None) -> Path:
    """Store a case as a plain folder (``case.json`` says the format, options and expected problems)."""
    d = corpus / fmt / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    links = []
    for rel, data in files.items():
        if isinstance(data, tuple):
            links.append(rel)
            continue
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    meta = {"format": fmt, "options": {k: _jsonable(v) for k, v in options.items()}, "note": note,
            "symlinks_to_canary": links, "expect_problems": expect or []}
    (d / "case.json").write_text(json.dumps(meta, indent=2, ensure_ascii=True, allow_nan=True) + "\n", encoding="utf-8")
    return d


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return {"float": repr(v)}
    if isinstance(v, int) and abs(v) > 2**53:
        return {"int": str(v)}
    return v


def options_from_json(options: dict) -> dict:
    out = {}
    for k, v in options.items():
        if isinstance(v, dict) and "float" in v:
            v = float(v["float"])
        elif isinstance(v, dict) and "int" in v:
            v = int(v["int"])
        out[k] = v
    return out


# ------------------------------------------------------------------------------------- property
def _inside(path: str, root: Path) -> bool:
    p = os.path.abspath(path)
    r = os.path.abspath(root)
    return p == r or p.startswith(r + os.sep)


def check_reader(fmt: str, src: Path, options: dict) -> tuple[list[str], list]:
    """(failures, items) of reading ``src`` with the ``fmt`` reader."""
    from yolo_ft.prepare.readers import get_reader

    failures: list[str] = []
    try:
        items = list(get_reader(fmt).read(src, **options))
    except Exception as e:  # noqa: BLE001 - this is what we look for
        return [f"{fmt} reader raised {type(e).__name__}: {e}\n{traceback.format_exc(limit=-4)}"], []
    for it in items:
        if isinstance(it, Problem):
            if not isinstance(it.file, str) or not it.file or not isinstance(it.problem, str) or not it.problem.strip():
                failures.append(f"{fmt}: Problem without a file or reason: {it!r}")
            elif not _inside(it.file, src):
                failures.append(f"{fmt}: Problem names a file outside the source root: {it!r}")
        elif isinstance(it, Record):
            if not isinstance(it.image, Path):
                failures.append(f"{fmt}: Record.image is not a Path: {it.image!r}")
        else:
            failures.append(f"{fmt}: reader yielded {type(it).__name__}, not Record/Problem")
    return failures, items


def check_output(out: Path, report: dict, canary: bytes | None = None) -> list[str]:
    """Failures of a written dataset against its data.yaml and report.json (empty when valid)."""
    fails: list[str] = []
    try:
        cfg = yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))
        on_disk = json.loads((out / "report.json").read_text(encoding="utf-8"))
    except Exception as e:  # noqa: BLE001
        return [f"output unreadable: {type(e).__name__}: {e}"]
    if on_disk != json.loads(json.dumps(report, default=str)):
        fails.append("report.json differs from the returned report")
    names = cfg.get("names") if isinstance(cfg, dict) else None
    if not isinstance(names, dict) or sorted(names) != list(range(len(names))):
        fails.append(f"data.yaml names is not a contiguous id->name dict: {names!r}")
        names = {}
    if Path(cfg.get("path", "")) != out:
        fails.append(f"data.yaml path {cfg.get('path')!r} != {out}")
    if on_disk.get("classes") != [names[i] for i in sorted(names)]:
        fails.append("report classes differ from data.yaml names")
    total_boxes = 0
    for split in ("train", "val", "test"):
        imgs = sorted((out / "images" / split).iterdir()) if (out / "images" / split).is_dir() else []
        lbls = sorted((out / "labels" / split).iterdir()) if (out / "labels" / split).is_dir() else []
        if len(imgs) != on_disk["images"][split]:
            fails.append(f"{split}: {len(imgs)} images on disk, report says {on_disk['images'][split]}")
        if {p.stem for p in imgs} != {p.stem for p in lbls} or len(imgs) != len(lbls):
            fails.append(f"{split}: images and labels do not pair up")
        for p in imgs:
            if p.is_symlink():
                fails.append(f"{p} is a symlink")
            if canary is not None and p.read_bytes() == canary:
                fails.append(f"{p} is the canary from outside the source root")
        n = 0
        for p in lbls:
            for line in p.read_text(encoding="utf-8").splitlines():
                t = line.split()
                try:
                    c, cx, cy, w, h = int(t[0]), *map(float, t[1:])
                except Exception:  # noqa: BLE001
                    fails.append(f"{p}: bad line {line!r}")
                    continue
                ok = (c in names and all(math.isfinite(v) for v in (cx, cy, w, h)) and w > 0 and h > 0
                      and cx - w / 2 >= -1e-6 and cy - h / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6 and cy + h / 2 <= 1 + 1e-6)
                if not ok:
                    fails.append(f"{p}: invalid YOLO line {line!r}")
                n += 1
        total_boxes += n
        if n != on_disk["boxes"][split]:
            fails.append(f"{split}: {n} boxes on disk, report says {on_disk['boxes'][split]}")
    return fails


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def check_prepare(fmt: str, src: Path, out: Path, options: dict, canary: bytes | None = None,
                  seen: list | None = None) -> tuple[list[str], str]:
    """(failures, outcome) of prepare() strict and, if that refuses, with skip_invalid.

    The problems prepare reported (strict) are appended to ``seen`` as (file, problem) pairs.
    """
    from yolo_ft.prepare.api import prepare
    from yolo_ft.records import InvalidDatasetError, YoloFtError

    failures: list[str] = []
    outcome = ""
    for skip in (False, True):
        if out.exists():
            shutil.rmtree(out)
        try:
            report = prepare(src, out, format=fmt, skip_invalid=skip, workers=1, **options)
        except InvalidDatasetError as e:
            outcome += "invalid;" if not skip else "skip-invalid-refused;"
            if seen is not None and not skip:
                seen.extend((p.file, p.problem) for p in e.problems)
            if skip:
                failures.append("InvalidDatasetError raised with skip_invalid=True")
            if not e.problems or any(not p.file or not p.problem for p in e.problems):
                failures.append(f"InvalidDatasetError without named problems: {e.problems!r}")
            outside = [p for p in e.problems if not _inside(p.file, src)]
            if outside:
                failures.append(f"problems naming files outside the source root: {outside[:3]!r}")
            if out.exists() or _leftovers(out):
                failures.append(f"strict failure left output behind: {out.exists()} {_leftovers(out)}")
            if not skip:
                continue
            break
        except YoloFtError as e:
            outcome += f"error({str(e)[:40]});"
            if not str(e).strip():
                failures.append("YoloFtError with an empty message")
            if out.exists() or _leftovers(out):
                failures.append(f"refused run left output behind: {out.exists()} {_leftovers(out)}")
            break
        except Exception as e:  # noqa: BLE001 - the crash we look for
            failures.append(f"prepare(skip_invalid={skip}) raised {type(e).__name__}: {e}\n"
                            f"{traceback.format_exc(limit=-5)}")
            break
        else:
            outcome += "written;" if not skip else "written-skipping;"
            failures += check_output(out, report, canary)
            break
    if out.exists():
        shutil.rmtree(out)
    return failures, outcome


def check_case(work: Path, fmt: str, files: dict, options: dict | None = None, run_prepare: bool = True) -> dict:
    """Write a case under ``work`` and check the whole property; returns failures and what happened."""
    options = options or {}
    src = write_case(work, files)
    canary = canary_bytes()
    failures, items = check_reader(fmt, src, dict(options))
    outcome = ""
    prepare_problems: list[tuple[str, str]] = []
    if run_prepare and not failures:
        f2, outcome = check_prepare(fmt, src, Path(work) / "out", dict(options), canary, prepare_problems)
        failures += f2

    pwned = [p for p in (Path(work) / "canary_dir").iterdir() if p.name != "x.png"]
    if pwned:
        failures.append(f"a data file executed code: created {pwned}")
    return {"failures": failures, "outcome": outcome,
            "problems": [(i.file, i.problem) for i in items if isinstance(i, Problem)],
            "prepare_problems": prepare_problems,
            "records": sum(not isinstance(i, Problem) for i in items)}


def run_strategy(fmt: str, on_case: Callable[[dict, dict, dict], None]):
    """The hypothesis test body for one format (``on_case(files, options, result)`` sees each)."""
    import tempfile

    from hypothesis import given

    @given(CASES[fmt])
    def body(case):
        files, _source, options = case
        with tempfile.TemporaryDirectory(prefix=f"fuzz-{fmt}-") as td:
            result = check_case(Path(td), fmt, files, options)
        on_case(files, options, result)

    return body


# --------------------------------------------------------------------------------- curated corpus
def _dicom_ok(seed: int = 0, **overrides) -> bytes:
    """A valid 24x32 16-bit CT slice, with ``overrides`` (keyword -> value) set on the dataset."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(seed)])
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = "P1", "CT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 24, 32, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.random.default_rng(seed).integers(0, 4000, (24, 32)).astype("<u2").tobytes()
    for k, v in overrides.items():
        setattr(ds, k, v)
    buf = io.BytesIO()
    from pydicom import config

    old = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        ds.save_as(buf, enforce_file_format=True)
    finally:
        config.settings.writing_validation_mode = old
    return buf.getvalue()


def _mask_png(a: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a, mode).save(buf, "PNG") if mode else Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def curated_cases() -> list[tuple[str, str, dict, dict, str, list[str]]]:
    """(format, name, files, options, note, expected problem fragments): the worst cases, kept as a corpus."""
    img0, img1 = tiny_image(0), tiny_image(1)
    lbl = b"0 0.5 0.5 0.2 0.2\n"
    yolo_ok = {"images/train/img0.png": img0, "labels/train/img0.txt": lbl,
               "images/val/img1.png": img1, "labels/val/img1.txt": lbl}
    coco = coco_base(2)
    mask = np.zeros((24, 32), np.uint8)
    mask[3:9, 4:12] = 255
    cases = [
        ("yolo", "yaml_alias_bomb", {**yolo_ok, "data.yaml": HOSTILE_YAML[3].encode()}, {},
         "YAML billion laughs: aliases expand to 43M strings if a class name is str()-ed", ["data.yaml"]),
        ("yolo", "yaml_python_tag", {**yolo_ok, "data.yaml": HOSTILE_YAML[0].encode()}, {},
         "!!python/object/apply in data.yaml: refused, never executed", ["YAML"]),
        ("yolo", "yaml_unparseable", {**yolo_ok, "data.yaml": b"train: images/train\nval: images/val\nnames: {0: a\n"},
         {}, "a data.yaml that does not parse must not be silently ignored (class names would be lost)", ["YAML"]),
        ("yolo", "yaml_huge_nc", {**yolo_ok, "data.yaml": HOSTILE_YAML[7].encode()}, {},
         "nc: 100000000 without names: MemoryError building class_0..class_N", ["nc"]),
        ("yolo", "label_nan_inf_huge", {**yolo_ok, "labels/train/img0.txt": b"0 nan 0.5 0.2 0.2\n",
                                        "labels/val/img1.txt": b"0 0.5 0.5 1e400 0.2\n0 0.5 0.5 0.1\n"}, {},
         "NaN / overflowing coordinates and a short line", ["NaN or infinite", "line 1"]),
        ("yolo", "label_class_ids", {**yolo_ok, "data.yaml": b"train: images/train\nval: images/val\nnames: [a]\n",
                                     "labels/train/img0.txt": b"-1 0.5 0.5 0.2 0.2\n",
                                     "labels/val/img1.txt": b"7 0.5 0.5 0.2 0.2\n"}, {},
         "negative and unknown class ids", ["class id", "not in the dataset's names"]),
        ("yolo", "label_utf16_bom_box_outside", {**yolo_ok, "labels/train/img0.txt": "0 0.5 0.5 0.2 0.2\n".encode("utf-16"),
                                                 "labels/val/img1.txt": b"0 1.4 0.5 0.2 0.2\n"}, {},
         "UTF-16 label file; a box far outside the image", ["not UTF-8", "outside"]),
        ("yolo", "image_list_escapes", {**yolo_ok, "train.txt": f"../canary.png\n{CANARY_ABS}\nimages/train/img0.png\n".encode(),
                                        "data.yaml": b"train: train.txt\nval: images/val\nnames: [a]\n"}, {},
         "a .txt image list naming files outside the root", ["escapes", "absolute"]),
        ("yolo", "too_long_names", {**yolo_ok, "list.txt": ("x" * 300 + ".png\nimages/train/img0.png\n").encode(),
                                    "data.yaml": ("path: " + "p" * 300 + "\ntrain: list.txt\nval: " + "v" * 300
                                                  + "\nnames: [a]\n").encode()}, {},
         "names longer than the file system allows (ENAMETOOLONG) in path:, a split entry and an image list",
         ["File name too long"]),
        ("coco", "nan_inf_huge_bbox", {"img0.png": img0, "img1.png": img1, "train.json": dumps_json({
            **coco, "annotations": [{**coco["annotations"][0], "bbox": [float("nan"), 1, 5, 5]},
                                    {**coco["annotations"][1], "bbox": [1, 1, float("inf"), 5]}]}).encode()},
         {}, "NaN and Infinity bbox values (json allows them)", ["not finite"]),
        ("coco", "duplicate_ids", {"img0.png": img0, "img1.png": img1, "train.json": dumps_json({
            **coco, "images": coco["images"] + [{**coco["images"][0], "file_name": "img1.png"}],
            "annotations": coco["annotations"] + [coco["annotations"][0]],
            "categories": coco["categories"] + [{"id": 1, "name": "c"}]}).encode()}, {},
         "duplicated image, annotation and category ids", ["duplicate image id", "duplicate category id"]),
        ("coco", "deep_nesting", {"img0.png": img0, "train.json": ('{"images": ' + "[" * 5_000 + "]" * 5_000
                                                                   + ', "annotations": [], "categories": []}').encode()},
         {}, "5 000 nested lists: RecursionError in the JSON parser", ["nested too deeply"]),
        ("coco", "wrong_types_escapes", {"img0.png": img0, "img1.png": img1, "train.json": dumps_json({
            **coco, "images": [{"id": 1, "file_name": "../canary.png", "width": 32, "height": 24},
                               {"id": 2, "file_name": CANARY_ABS, "width": "wide", "height": None},
                               {"id": True, "file_name": ["img0.png"]}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": "1,2,3,4"}]}).encode()}, {},
         "escaping file names, bool ids, list file_name, string bbox", ["escapes", "absolute", "needs an integer 'id'"]),
        ("voc", "billion_laughs", {"img0.png": img0, "img0.xml": (XML_HEADERS[3] + "<annotation><filename>img0.png"
                                   "</filename><object><name>&lol9;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5"
                                   "</xmax><ymax>5</ymax></bndbox></object></annotation>").encode()}, {},
         "entity expansion bomb: refused by defusedxml", ["entities"]),
        ("voc", "xxe_and_bad_numbers", {"img0.png": img0, "img1.png": img1,
                                        "img0.xml": (XML_HEADERS[4] + "<annotation><filename>&xxe;</filename></annotation>").encode(),
                                        "img1.xml": b"<annotation><filename>img1.png</filename><object><name>a</name>"
                                                    b"<bndbox><xmin>NaN</xmin><ymin>1</ymin><xmax>1e400</xmax><ymax>5"
                                                    b"</ymax></bndbox></object></annotation>"}, {},
         "external entity to /etc/passwd; NaN and overflowing coordinates", ["entities", "not finite"]),
        ("cvat", "billion_laughs_and_nan", {"images/img0.png": img0, "annotations.xml": (
            XML_HEADERS[3] + '<annotations><version>1.1</version><image id="0" name="img0.png" width="32" height="24">'
            '<box label="&lol9;" xtl="1" ytl="1" xbr="5" ybr="5"/></image></annotations>').encode()}, {},
         "entity bomb in an attribute", ["entities"]),
        ("cvat", "bad_shapes", {"images/img0.png": img0, "images/img1.png": img1, "annotations.xml": (
            '<annotations><version>1.1</version><meta><task><labels><label><name>a</name></label></labels></task></meta>'
            '<image id="0" name="img0.png" width="32" height="24"><polygon label="a" points="1,1;nan,2;5,9"/></image>'
            '<image id="1" name="../canary.png" width="32" height="24"><box label="zzz" xtl="1" ytl="1" xbr="5" ybr="5"/>'
            '</image></annotations>').encode()}, {},
         "NaN polygon point, undeclared label, escaping name", ["not finite", "not declared"]),
        ("labelme", "bad_embedded_and_escape", {"img0.png": img0, "a.json": dumps_json(
            {**labelme_base("../canary.png"), "imageData": None}).encode(),
            "b.json": dumps_json({**labelme_base("missing.png"), "imageData": "!!notbase64!!"}).encode(),
            "c.json": dumps_json({**labelme_base("img0.png"), "shapes": [{"label": "a", "points": [[1, 1], [float("inf"), 2]]}]}).encode()},
         {}, "imagePath escaping, undecodable imageData, infinite point", ["escapes", "base64", "not finite"]),
        ("labelme", "odd_class_names", {
            **{f"img{i}.png": tiny_image(i) for i in range(6)},
            **{f"a{i}.json": dumps_json({**labelme_base(f"img{i}.png"), "shapes": [
                {"label": lab, "points": [[2, 3], [20, 15]], "shape_type": "rectangle"}]}).encode()
               for i, lab in enumerate(["9" * 5000, "x" + "9" * 5000, "99999999999", "²", "a\x85b", "腎臓 stone"])}},
         {}, "class names that are huge numbers (int() limit, 10^11 bare ids), a superscript digit, a NEL that "
             "PyYAML folds, CJK: all kept exactly", []),
        ("labelme", "utf16_and_deep", {"img0.png": img0, "a.json": dumps_json(labelme_base("img0.png")).encode("utf-16"),
                                        "b.json": ('{"shapes": ' + "[" * 5_000 + "]" * 5_000 + ', "imagePath": "img0.png"}').encode()},
         {}, "UTF-16 JSON (read correctly: json detects UTF-16); deep nesting", ["nested too deeply"]),
        ("masks", "nan_threshold", {"images/img0.png": img0, "masks/img0.png": _mask_png(mask)},
         {"threshold": float("nan")}, "a NaN threshold would silently make every mask empty", ["threshold"]),
        ("masks", "rgb_size_mismatch_garbage", {"images/img0.png": img0, "images/img1.png": img1,
                                                 "masks/img0.png": _mask_png(np.stack([mask, mask[::-1], mask], -1)),
                                                 "masks/img1.png": _mask_png(mask[:10]), "masks/zzz.png": b"\x89PNG\r\n\x1a\ngarbage"},
         {}, "colour mask, mask/image size mismatch, a corrupt mask with no image", ["colour", "mask is 32x10", "no image"]),
        ("dicom", "truncated_and_bad_header", {"a.dcm": _dicom_ok(1)[:300], "b.dcm": _dicom_ok(2, Rows=65535),
                                               "c.dcm": _dicom_ok(3, BitsStored=40), "d.dcm": b"\x00" * 128 + b"DICM",
                                               "a.txt": lbl, "b.txt": lbl, "c.txt": lbl, "d.txt": lbl},
         {}, "truncated file, Rows larger than the pixel data, impossible BitsStored, preamble only",
         ["a.dcm", "b.dcm", "c.dcm", "d.dcm"]),
        ("dicom", "nan_rescale_and_window", {"a.dcm": _dicom_ok(4), "a.txt": b"0 0.5 nan 0.2 0.2\n"},
         {"window": "nan,400"}, "NaN window option; NaN in the sidecar label", ["window"]),
    ]
    return cases
