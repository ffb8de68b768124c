"""Settings precedence (defaults < config < flags), augmentation presets and seeded train subsets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from yolo_ft.records import YoloFtError
from yolo_ft.train.api import CONFIG_DIR, DEFAULTS, resolve_settings


def test_bundled_configs_load_and_only_use_known_keys():
    for name in ("default", "kidney-stone", "cpu-smoke", "cpu-demo"):
        s = resolve_settings(name, {})
        assert s["optimizer"] in {"SGD", "AdamW"} and s["schedule"] == "two-stage"
    assert resolve_settings("cpu-smoke", {})["device"] == "cpu"
    demo = resolve_settings("cpu-demo", {})
    # the demo recipe must step the optimizer every batch (see the nbs note in configs/cpu-demo.yaml)
    assert demo["device"] == "cpu" and demo["nbs"] == demo["batch"]
    # measured on GPU: the ct preset lost to default augmentation on kidney-stone CT (bench/results/)
    assert resolve_settings("kidney-stone", {})["augment"] == "default"


def test_precedence_defaults_config_flags(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 7\nlr0: 0.005\nimgsz: 320\n")
    s = resolve_settings(cfg, {"imgsz": 96, "batch": None})
    assert (s["epochs"], s["lr0"], s["imgsz"], s["batch"]) == (7, 0.005, 96, DEFAULTS["batch"])


def test_unknown_config_key_is_named(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 7\nlearning_rate: 0.1\n")
    with pytest.raises(YoloFtError, match="learning_rate"):
        resolve_settings(cfg, {})
    with pytest.raises(YoloFtError, match="not found"):
        resolve_settings(tmp_path / "missing.yaml", {})


def test_config_dir_is_the_repo_configs():
    assert (CONFIG_DIR / "default.yaml").is_file()


def test_augment_presets():
    import albumentations as A

    from yolo_ft.train.augment import PRESETS, resolve_augment

    ct = resolve_augment("ct")
    assert ct["hsv_h"] == ct["hsv_s"] == ct["hsv_v"] == 0.0 and ct["flipud"] == 0.0  # no colour jitter on CT
    assert [type(t).__name__ for t in ct["augmentations"]] == ["CLAHE", "GaussianBlur", "GaussNoise"]
    assert all(isinstance(t, A.BasicTransform) for t in ct["augmentations"])
    assert resolve_augment("default") == {}  # Ultralytics' own pipeline untouched
    none = resolve_augment("none")
    assert none["mosaic"] == 0.0 and none["augmentations"] == []
    custom = resolve_augment({"preset": "ct", "mode": "replace", "albumentations": [{"name": "CLAHE", "p": 1.0}]})
    assert custom["mosaic"] == 0.0 and len(custom["augmentations"]) == 1
    assert set(PRESETS) >= {"none", "ct", "xray", "default"}
    with pytest.raises(YoloFtError, match="NotATransform"):
        resolve_augment({"preset": "ct", "albumentations": [{"name": "NotATransform"}]})
    with pytest.raises(YoloFtError, match="unknown augment preset"):
        resolve_augment("sepia")


def test_ct_preset_runs_inside_ultralytics_pipeline(tiny_yolo_dataset):
    """The preset's albumentations really run on training samples and keep boxes valid."""
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.augment import Albumentations
    from ultralytics.data.utils import check_det_dataset

    from yolo_ft.train.augment import resolve_augment

    kw = resolve_augment("ct")
    cfg = get_cfg(overrides={"imgsz": 128, **kw})
    data = check_det_dataset(str(tiny_yolo_dataset))
    ds = build_yolo_dataset(cfg, data["train"], 4, data, mode="train")
    alb = [t for t in ds.transforms.transforms if isinstance(t, Albumentations)]
    assert len(alb) == 1 and [type(t).__name__ for t in alb[0].transform.transforms] == [
        "CLAHE", "GaussianBlur", "GaussNoise"]
    sample = ds[0]
    assert sample["img"].shape[1:] == (128, 128)
    assert ((sample["bboxes"] >= 0) & (sample["bboxes"] <= 1)).all()


def test_subsample_is_seeded_stratified_and_leaves_val(kidney_yolo, tmp_path):
    from yolo_ft.train.subsample import subsample_train

    src = tmp_path / "data.yaml"  # the shared dataset is read-only: the yaml lives in tmp, images are read in place
    src.write_text(f"path: {kidney_yolo / 'datasets'}\ntrain: images/train\nval: images/validation\n"
                   "names:\n  0: KIDNEY_STONE\n")
    a = subsample_train(src, 0.1, 0, tmp_path / "a")
    b = subsample_train(src, 0.1, 0, tmp_path / "b")
    c = subsample_train(src, 0.1, 1, tmp_path / "c")
    la, lb, lc = ((p.parent / "train.txt").read_text().splitlines() for p in (a, b, c))
    assert la == lb and la != lc  # deterministic by seed
    # SOURCE.md: train has 500 images, 44 with empty label files -> 456 positive, 44 negative
    names = [Path(x).name for x in la]
    assert len(names) == round(0.1 * 456) + round(0.1 * 44) == 50
    assert sum(n.startswith("Normal") for n in names) == 4  # negatives kept in proportion
    d = yaml.safe_load(a.read_text())
    assert d["val"] == str((kidney_yolo / "datasets" / "images" / "validation").resolve())
    assert d["names"] == {0: "KIDNEY_STONE"} and d["yolo_ft_subset"]["of"] == 500
    with pytest.raises(YoloFtError, match="fraction"):
        subsample_train(src, 1.5, 0, tmp_path / "d")


def test_nbs_sets_the_optimizer_step_count(tiny_yolo_dataset, tmp_path):
    """--nbs reaches Ultralytics: with nbs == batch every batch is an optimizer step (accumulate 1)."""
    from yolo_ft.train import train

    seen = {}

    def grab(trainer):
        seen["accumulate"], seen["nbs"] = trainer.accumulate, trainer.args.nbs

    train(tiny_yolo_dataset, tmp_path / "r", schedule="full", epochs=1, imgsz=64, batch=8, nbs=8, device="cpu",
          workers=0, amp=False, callbacks={"on_train_epoch_end": [grab]})
    assert seen == {"accumulate": 1, "nbs": 8}
    default = resolve_settings(None, {})
    assert default["nbs"] is None  # Ultralytics' own 64 unless asked
