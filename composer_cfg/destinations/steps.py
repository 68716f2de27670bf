"""The steps a tracker can store: MLflow, TensorBoard and W&B keep a metric's step (the x-axis)
as a signed 64-bit integer, so a point at a later step can not be stored at all.

Such a call is refused for the tracker alone, at the call (`refused_step`, from the destination's
`Policies.refuses`), and its sink leaves the record out (`storable`): the other records of the
same write still reach the back end, and a sync that meets one in a records file reports it and
sends the rest.
"""

from __future__ import annotations

from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.record import Kind, Record

MAX_STEP = 2**63 - 1


def storable(record: Record) -> bool:
    """Whether a tracker can store `record`: not a point (data, an image...) at a step beyond
    `MAX_STEP` (FIT data has no step: trackers keep it as parameters)."""
    return (record.kind is not Kind.DATA and record.kind is not Kind.MEDIA) or record.level is LogLevel.FIT \
        or record.timestamp.batch <= MAX_STEP


def refused_step(record: Record) -> str | None:
    """Why a tracker refuses `record`'s step, or None (on the logging thread, for every record:
    the common case, a step in range, is one comparison)."""
    if record.timestamp.batch <= MAX_STEP or storable(record):
        return None
    return (f"step {record.timestamp.batch} is beyond the largest step a tracker stores (2**63 - 1); "
            f"the call's values were not logged there")
