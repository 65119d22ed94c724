"""Progress for ``vog.score``: a bar in terminals and notebooks (tqdm when installed)."""

import sys
import time


class _Text:
    """A plain progress line on stderr, at most once a second."""

    def __init__(self):
        self.total = self.done = 0
        self.message = ""
        self._last = 0.0

    def start(self, total, message):
        self.total, self.done, self.message = int(total), 0, message
        self._last = 0.0

    def advance(self, n):
        self.done += int(n)
        now = time.monotonic()
        if now - self._last >= 1.0:
            self._last = now
            self._print("\r")

    def finish(self):
        self._print("\r")
        sys.stderr.write("\n")
        sys.stderr.flush()

    def _print(self, prefix):
        share = 100.0 * self.done / self.total if self.total else 100.0
        sys.stderr.write(f"{prefix}{self.message}: {self.done}/{self.total} ({share:.0f}%)")
        sys.stderr.flush()


class _Tqdm:
    def __init__(self, tqdm):
        self._tqdm = tqdm
        self._bar = None

    def start(self, total, message):
        self.finish()
        self._bar = self._tqdm(total=int(total), desc=message, unit="ex", leave=False)

    def advance(self, n):
        if self._bar is not None:
            self._bar.update(int(n))

    def finish(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_for(progress):
    """The progress object for ``score(progress=...)``: ``None`` for no progress."""
    if progress is False or progress is None:
        return None
    if progress is True:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return _Text() if sys.stderr.isatty() else None
        return _Tqdm(tqdm)
    for method in ("start", "advance", "finish"):
        if not callable(getattr(progress, method, None)):
            raise TypeError(f"progress object {progress!r} has no {method}() method")
    return progress
