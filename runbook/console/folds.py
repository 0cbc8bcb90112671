"""The folds the console keeps per log. The pages need the rows (and causes) first;
escalation's inputs are folded by a second pass that catches up behind them, so a large
log's list is usable in half the time."""

from __future__ import annotations

from typing import Any

from projections.audit import Audit
from projections.base import Projection
from projections.causes import Causes
from projections.metrics import Metrics
from projections.transfers import Transfers
from projections.violations import Violations

ROWS: tuple[Projection[Any], ...] = (Transfers(), Causes())
JUDGED: tuple[Projection[Any], ...] = (Audit(), Metrics(), Violations())
PROJECTIONS = ROWS + JUDGED
