"""A graceful stop: SIGINT/SIGTERM become a flag the training loops check between steps."""

from __future__ import annotations


class GracefulStop:
    """Turns SIGINT/SIGTERM into a flag the training loops check between steps.

    A loop that sees `requested` saves a checkpoint at the step boundary and
    raises KeyboardInterrupt, so `--resume` continues exactly where it stopped.
    A second signal stops at once.
    """

    def __init__(self):
        self.requested = False
        self._old: dict = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        for s, h in self._old.items():
            signal.signal(s, h)
        return False
