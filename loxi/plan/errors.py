"""The one exception loxi-plan's own checks raise (bad template, bad --var, invalid output).

CNI-level problems stay `intent.errors.CniError`; both end as one line on stderr and exit 1.
"""

from __future__ import annotations


class PlanError(Exception):
    """A problem with what the operator asked for; the message is the whole report."""
