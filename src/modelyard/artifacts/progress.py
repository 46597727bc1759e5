"""Progress bars for big transfers: drawn on an interactive stderr, silent everywhere else.

Both backends count bytes through `TransferProgress`; it draws a rich bar only when the size is known
to exceed the `progress_threshold_mb` setting and the console is a terminal, so logs and CI output
stay clean and small files never pay for importing rich.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from modelyard import config

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


class TransferProgress:
    """Counts the bytes of one transfer; shows a bar once `set_total` reports a big enough size."""

    def __init__(self, description: str, total: int | None = None, console: Console | None = None) -> None:
        self.description = description
        self.completed = 0
        self._console = console
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self.set_total(total)

    @property
    def visible(self) -> bool:
        return self._bar is not None

    def set_total(self, total: int | None) -> None:
        threshold = float(config.get("progress_threshold_mb")) * 2**20
        if self._bar is not None or total is None or total <= threshold:
            return
        console = self._console or _stderr_console()
        if not console.is_terminal:
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._task = self._bar.add_task(self.description, total=total, completed=self.completed)
        self._bar.start()

    def advance(self, nbytes: int) -> None:
        self.completed += nbytes
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.completed)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __enter__(self) -> TransferProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
