"""Library entry points of ``yolo-ft review``: the same knobs as the CLI, returning a result object."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

HIGH_CONF = 0.5  # an FP at or above this confidence is "high-confidence"
SMALL_AREA = 32 * 32  # GT boxes below this many px² are "small" (COCO's definition)


@dataclass
class ReviewResult:
    """What a review built: where to find it in FiftyOne, the headline numbers, and the report path."""

    dataset: str
    split: str
    samples: int
    pred_field: str
    eval_key: str
    views: list[str]
    summary: object  # yolo_ft.review.fiftyone.EvalSummary
    ingest: dict = field(default_factory=dict)
    report: Path | None = None
    url: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["report"] = str(self.report) if self.report else None
        return d


def review(
    data: str | os.PathLike,
    model: str | os.PathLike,
    *,
    split: str = "val",
    name: str | None = None,
    conf: float = 0.25,
    iou: float = 0.5,
    nms_iou: float = 0.7,
    imgsz: int | None = None,
    launch: bool = True,
    port: int = 5151,
    address: str = "127.0.0.1",
    report: str | os.PathLike | None = None,
    worst_n: int = 12,
    high_conf: float = HIGH_CONF,
    small_area: float = SMALL_AREA,
    batch: int = 16,
    progress: bool = True,
    block: bool = True,
    on_ready=None,
) -> ReviewResult:
    """Load ``split`` of ``data`` into FiftyOne, predict with ``model``, evaluate, save views, report, serve.

    ``conf`` is the prediction confidence threshold, ``iou`` the TP matching threshold, ``nms_iou``
    the NMS threshold. With ``launch`` the App is served until Ctrl-C (``block=False`` returns the
    running session in ``on_ready(session)`` instead and leaves closing it to the caller).
    """
    from yolo_ft.review import fiftyone as rfo
    from yolo_ft.review.predict import load_predictor, model_tag
    from yolo_ft.review.views import save_review_views
    from yolo_ft.review.yolo_data import load_data_yaml, resolve_split

    yd = load_data_yaml(data)
    split = resolve_split(yd, split)
    predictor = load_predictor(model, conf=conf, iou=nms_iou, imgsz=imgsz, batch=batch)
    fields = rfo.ModelFields(model_tag(model))
    ds = rfo.open_dataset(yd, split, name)
    counts = rfo.ingest_split(ds, yd, split, progress=progress)
    _check_names(predictor.names, yd.names, model, yd.yaml_path)
    rfo.store_predictions(ds, predictor, fields, batch_size=batch, progress=progress)
    results, summary = rfo.evaluate(ds, fields, iou=iou, progress=progress)
    names = save_review_views(ds, fields, high_conf=high_conf, small_area=small_area)
    ds.info.setdefault("models", {})[fields.pred_field] = {"model": str(Path(model).resolve()), "conf": conf}
    ds.save()
    result = ReviewResult(
        dataset=ds.name, split=split, samples=len(ds), pred_field=fields.pred_field, eval_key=fields.eval_key,
        views=names.all(), summary=summary, ingest=counts,
    )
    if report is not None:
        from yolo_ft.review.report import write_report
        from yolo_ft.review.views import mistakes_view

        result.report = write_report(
            ds, mistakes_view(ds, fields), fields, results, summary, report, worst_n=worst_n,
            extra={"model": str(model), "data": str(yd.yaml_path), "split": split, "conf": conf},
        )
    if launch:
        from yolo_ft.review.app import serve_review

        session = serve_review(ds.name, names.mistakes, address=address, port=port, block=block, on_ready=on_ready)
        result.url = session.url
    return result


def write_review_report(
    data: str | os.PathLike,
    model: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str = "val",
    conf: float = 0.25,
    name: str | None = None,
    **kwargs,
) -> dict:
    """Build the review dataset without the App and write ``out_dir/index.html`` (used by ``make demo``).

    Returns :meth:`ReviewResult.to_dict`: plain JSON-ready values (dataset name, fields, metrics, report path).
    """
    return review(data, model, split=split, conf=conf, name=name, launch=False, report=out_dir, **kwargs).to_dict()


def _check_names(model_names: dict[int, str], data_names: dict[int, str], model, yaml_path) -> None:
    """A model trained on other classes makes every box an FP: say so instead of reporting mAP 0 silently."""
    if model_names and model_names != data_names:
        log.warning(
            "%s: model classes %s differ from %s names %s; predictions keep the model's names",
            model, model_names, yaml_path, data_names,
        )
