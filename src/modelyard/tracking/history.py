"""Downsampling metric histories for plots: fewer points, same shape, spikes kept."""

from __future__ import annotations

from modelyard.errors import InvalidArgument
from modelyard.schemas import MetricHistory


def downsample(history: MetricHistory, max_points: int) -> MetricHistory:
    """At most `max_points` points: the history is cut into max_points // 2 buckets of consecutive points and
    each bucket keeps its minimum and its maximum (in step order), so no spike disappears from a plot."""
    if max_points < 2:
        raise InvalidArgument(f"max_points must be at least 2, got {max_points}.")
    n = len(history)
    if n <= max_points:
        return history
    buckets = max_points // 2
    keep: list[int] = []
    values = history.values
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        # NaN compares false both ways; treat it as neither min nor max unless the bucket is all NaN.
        idx = range(lo, hi)
        finite = [i for i in idx if values[i] == values[i]] or list(idx)
        i_min = min(finite, key=values.__getitem__)
        i_max = max(finite, key=values.__getitem__)
        keep.extend(sorted({i_min, i_max}))
    return MetricHistory.model_construct(
        key=history.key,
        steps=[history.steps[i] for i in keep],
        values=[values[i] for i in keep],
        timestamps=[history.timestamps[i] for i in keep],
    )
