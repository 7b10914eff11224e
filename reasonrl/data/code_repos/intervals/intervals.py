"""Closed intervals given as (start, end) pairs: merge them, measure them, test membership."""


def merge(intervals):
    """Merge overlapping or touching intervals. The result is sorted by start and has no overlaps."""
    merged = []
    for start, end in intervals:
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def total_length(intervals):
    """The total length the intervals cover, counting overlaps once."""
    return sum(end - start for start, end in merge(intervals))


def contains(intervals, point):
    """True when `point` lies in one of the intervals (both ends included)."""
    return any(start <= point <= end for start, end in intervals)
