"""Augmentation presets as data: Ultralytics hyper-parameters + an albumentations list.

Ultralytics 8.4 accepts ``augmentations=[A.Transform, ...]`` as a train argument and runs it in its
``Albumentations`` step (after mosaic/affine, before HSV/flip); it stores them as ``A.to_dict`` dicts, so
they survive checkpoints, ``--resume`` and DDP. A preset is therefore two dicts of plain data:

``hyp``            Ultralytics augmentation arguments (mosaic, hsv_*, degrees, scale, fliplr, ...).
``albumentations`` a list of ``{"name": <albumentations class>, **kwargs}`` built only at train time.

``mode="add"`` puts the albumentations on top of Ultralytics' own pipeline (mosaic etc. stay on);
``mode="replace"`` switches Ultralytics' geometric/colour augmentation off so only the list applies.

Why the ``ct`` preset: CT slices are grey-scale intensity maps where a colour shift is meaningless and a
brightness jitter changes the apparent density (a stone is *bright*), so no HSV jitter; anatomy has a
canonical orientation, so only mild rotation/scale and left-right flips (kidneys are bilateral), no
up-down flip; CLAHE, slight blur and noise mimic reconstruction kernels and dose differences.
"""

from __future__ import annotations

from typing import Any

from yolo_ft.records import YoloFtError

#: Ultralytics arguments that turn all of its own augmentation off (used by mode="replace" and "none").
ULTRALYTICS_OFF: dict[str, float] = {
    "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "degrees": 0.0, "translate": 0.0, "scale": 0.0, "shear": 0.0,
    "perspective": 0.0, "flipud": 0.0, "fliplr": 0.0, "mosaic": 0.0, "mixup": 0.0, "cutmix": 0.0, "copy_paste": 0.0,
}

# Shared by the medical presets: no colour jitter (intensity carries meaning), mild geometry, left-right
# flips only, no mixing of images.
_MEDICAL_GEOMETRY: dict[str, float] = {
    "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "degrees": 5.0, "translate": 0.05, "shear": 0.0,
    "perspective": 0.0, "flipud": 0.0, "fliplr": 0.5, "mixup": 0.0, "cutmix": 0.0,
}

PRESETS: dict[str, dict[str, Any]] = {
    # Ultralytics' defaults untouched (its own light albumentations set included).
    "default": {"mode": "add", "hyp": {}, "albumentations": None},
    # No augmentation at all: a control for A/B runs.
    "none": {"mode": "replace", "hyp": {}, "albumentations": []},
    "ct": {
        "mode": "add",
        "hyp": {**_MEDICAL_GEOMETRY, "scale": 0.25},
        "albumentations": [
            {"name": "CLAHE", "clip_limit": 2.0, "tile_grid_size": (8, 8), "p": 0.2},
            {"name": "GaussianBlur", "blur_limit": (3, 5), "p": 0.1},
            {"name": "GaussNoise", "std_range": (0.01, 0.04), "p": 0.15},
        ],
    },
    # Radiographs: as CT, plus mild contrast/gamma (exposure differs between machines, unlike CT HU values).
    "xray": {
        "mode": "add",
        "hyp": {**_MEDICAL_GEOMETRY, "scale": 0.2},
        "albumentations": [
            {"name": "CLAHE", "clip_limit": 3.0, "tile_grid_size": (8, 8), "p": 0.3},
            {"name": "RandomBrightnessContrast", "brightness_limit": 0.1, "contrast_limit": 0.15, "p": 0.3},
            {"name": "RandomGamma", "gamma_limit": (85, 115), "p": 0.2},
            {"name": "GaussNoise", "std_range": (0.01, 0.03), "p": 0.1},
        ],
    },
}


def build_albumentations(specs: list[dict[str, Any]]) -> list:
    """Instantiate ``[{"name": "CLAHE", "p": 0.2}, ...]`` as albumentations transforms."""
    import albumentations as A

    out = []
    for spec in specs:
        kwargs = dict(spec)
        name = kwargs.pop("name", None)
        cls = getattr(A, str(name), None)
        if cls is None or not isinstance(cls, type):
            raise YoloFtError(f"augmentation {name!r} is not an albumentations transform")
        try:
            out.append(cls(**kwargs))
        except Exception as e:  # wrong kwargs: say which transform
            raise YoloFtError(f"augmentation {name}: {e}") from e
    return out


def resolve_augment(preset: str | dict[str, Any] | None) -> dict[str, Any]:
    """Ultralytics train kwargs for a preset name or an inline preset dict (from a config file)."""
    if preset is None:
        preset = "default"
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise YoloFtError(f"unknown augment preset {preset!r}; choose one of {', '.join(PRESETS)}")
        spec = PRESETS[preset]
    elif isinstance(preset, dict):
        base = PRESETS.get(str(preset.get("preset", "default")))
        if base is None:
            raise YoloFtError(f"unknown augment preset {preset.get('preset')!r}")
        spec = {
            "mode": preset.get("mode", base["mode"]),
            "hyp": {**base["hyp"], **preset.get("hyp", {})},
            "albumentations": preset.get("albumentations", base["albumentations"]),
        }
    else:
        raise YoloFtError(f"augment must be a preset name or a mapping, got {type(preset).__name__}")
    mode = spec.get("mode", "add")
    if mode not in {"add", "replace"}:
        raise YoloFtError(f"augment mode must be 'add' or 'replace', got {mode!r}")
    kwargs: dict[str, Any] = dict(ULTRALYTICS_OFF) if mode == "replace" else {}
    kwargs.update(spec.get("hyp", {}))
    if spec.get("albumentations") is not None:
        kwargs["augmentations"] = build_albumentations(spec["albumentations"])
    return kwargs
