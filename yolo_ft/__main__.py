"""``python -m yolo_ft`` is the same as the ``yolo-ft`` console script."""

from yolo_ft.cli import main

raise SystemExit(main())
