"""`yolo-ft review`: a model's errors on a YOLO split, in the FiftyOne App and as an HTML report.

Importing this package is cheap; FiftyOne, Ultralytics and cv2 load only when a review runs.
"""

from yolo_ft.review.api import ReviewResult, review, write_review_report

__all__ = ["ReviewResult", "review", "write_review_report"]
