"""The saved views an error review starts from, one set per model.

- ``mistakes``: every sample with a miss or a false alarm, most misses first (a missed stone costs more
  than a false alarm), then most false positives.
- ``high-conf-fp``: only the false positives at or above a confidence, most confident first: the
  errors a threshold change will not remove.
- ``missed-small``: only the missed ground-truth boxes smaller than ``small_area`` px² (COCO's "small",
  32², by default): tiny objects are common here (median box width 6–11 px in some sets).
"""

from __future__ import annotations

from dataclasses import dataclass

import fiftyone as fo
from fiftyone import ViewField as F

from yolo_ft.review.api import HIGH_CONF, SMALL_AREA
from yolo_ft.review.fiftyone import GT_FIELD, ModelFields


@dataclass(frozen=True)
class ViewNames:
    mistakes: str
    high_conf_fp: str
    missed_small: str

    def all(self) -> list[str]:
        return [self.mistakes, self.high_conf_fp, self.missed_small]


def view_names(fields: ModelFields) -> ViewNames:
    tag = fields.tag.replace("_", "-")
    return ViewNames(f"mistakes-{tag}", f"high-conf-fp-{tag}", f"missed-small-{tag}")


def mistakes_view(ds: fo.Dataset, fields: ModelFields) -> fo.DatasetView:
    k = fields.eval_key
    return ds.match((F(f"{k}_fn") > 0) | (F(f"{k}_fp") > 0)).sort_by(
        [(f"{k}_fn", -1), (f"{k}_fp", -1), ("filepath", 1)], create_index=False
    )


def high_conf_fp_view(ds: fo.Dataset, fields: ModelFields, min_conf: float = HIGH_CONF) -> fo.DatasetView:
    p = fields.pred_field
    fp = (F(fields.eval_key) == "fp") & (F("confidence") >= min_conf)
    return ds.filter_labels(p, fp).sort_by(F(f"{p}.detections").map(F("confidence")).max(), reverse=True)


def small_box_expr(small_area: float) -> F:
    """Pixel area of a label's relative box, using the sample's stored image size."""
    bb = F("bounding_box")
    return bb[2] * F("$metadata.width") * bb[3] * F("$metadata.height") < small_area


def missed_small_view(ds: fo.Dataset, fields: ModelFields, small_area: float = SMALL_AREA) -> fo.DatasetView:
    missed = (F(fields.eval_key) == "fn") & small_box_expr(small_area)
    return ds.filter_labels(GT_FIELD, missed).sort_by(F(f"{GT_FIELD}.detections").length(), reverse=True)


def save_review_views(ds: fo.Dataset, fields: ModelFields, *, high_conf: float = HIGH_CONF,
                      small_area: float = SMALL_AREA) -> ViewNames:
    """Build the three views for one model and save them on the dataset (replacing older ones)."""
    names = view_names(fields)
    ds.save_view(names.mistakes, mistakes_view(ds, fields), overwrite=True,
                 description=f"{fields.pred_field}: samples with mistakes, most false negatives first")
    ds.save_view(names.high_conf_fp, high_conf_fp_view(ds, fields, high_conf), overwrite=True,
                 description=f"{fields.pred_field}: false positives with confidence >= {high_conf}")
    ds.save_view(names.missed_small, missed_small_view(ds, fields, small_area), overwrite=True,
                 description=f"{fields.pred_field}: missed ground truth smaller than {small_area:g} px²")
    return names
