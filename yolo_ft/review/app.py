"""Serve the FiftyOne App on a review dataset until the user presses Ctrl-C.

Bound to 127.0.0.1 by default: the App exposes every image path of the dataset, so listening on other
interfaces is an explicit ``--address`` choice. ``remote=True`` + ``auto=False`` means no browser is
opened on the server; the URL is printed instead.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

log = logging.getLogger(__name__)


def launch_app(dataset, view=None, *, address: str = "127.0.0.1", port: int = 5151):
    """Start the App server for ``dataset`` (opened on ``view``) and return the FiftyOne session."""
    import fiftyone as fo

    return fo.launch_app(dataset, view=view, address=address, port=port, auto=False, remote=True)


def serve_forever(session, *, poll_s: float = 1.0) -> None:
    """Block until interrupted (Ctrl-C / SIGINT, or SIGTERM from a process manager), then close the
    session so the App server stops with us instead of lingering on the port."""

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    try:
        while True:
            time.sleep(poll_s)
    except KeyboardInterrupt:
        log.info("stopping the FiftyOne App")
    finally:
        session.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def serve_review(dataset_name: str, view_name: str | None, *, address: str = "127.0.0.1", port: int = 5151,
                 block: bool = True, on_ready=None):
    """Open the App on a saved view of a review dataset, print the URL, serve until Ctrl-C (if ``block``)."""
    import fiftyone as fo

    ds = fo.load_dataset(dataset_name)
    view = ds.load_saved_view(view_name) if view_name else None
    session = launch_app(ds, view, address=address, port=port)
    print(f"FiftyOne App: {session.url}  (dataset {dataset_name}; Ctrl-C to stop)", flush=True)
    if on_ready is not None:
        on_ready(session)
    if block:
        serve_forever(session)
    return session
