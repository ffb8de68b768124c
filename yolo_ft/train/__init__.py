"""Transfer learning for YOLO11: staged freeze/unfreeze schedules inside one Ultralytics run, and A/B compare."""

from yolo_ft.train.api import train
from yolo_ft.train.compare import compare
from yolo_ft.train.schedules import SCHEDULES, Plan, build_plan

__all__ = ["SCHEDULES", "Plan", "build_plan", "compare", "train"]
