"""The numbers a setting accepts, and the words that say so.

One `Limit` per kind of number, in the scorecard file (scorecard.parser) and in the HEALTH_*
settings (settings): a value must be finite, within its bounds, and a whole number where one is
counted. The bounds are wide enough that no real configuration meets them, and narrow enough that
a slip (NaN, .inf, a few zeros too many) is refused when the definitions load, before anything is
written, instead of failing in SQL or skewing every score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    low: float
    high: float
    what: str = "a number"  # "a whole number of days": what a message says the value must be
    whole: bool = False  # an int, not a float
    above: bool = False  # `low` itself is refused

    def allows(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.whole else (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return (value > self.low if self.above else value >= self.low) and value <= self.high

    def __str__(self) -> str:
        """What the value must be: "a whole number of days from 1 to 3650", "a number above 0 and at
        most 600", "a finite number, 0 or more" (an unbounded limit's `what` says "finite")."""
        low, high = f"{self.low:g}", f"{self.high:g}"
        if math.isinf(self.low) and math.isinf(self.high):
            return self.what
        if math.isinf(self.high):
            return f"{self.what} above {low}" if self.above else f"{self.what}, {low} or more"
        if math.isinf(self.low):
            return f"{self.what}, at most {high}"
        return f"{self.what} above {low} and at most {high}" if self.above else f"{self.what} from {low} to {high}"

    def refusal(self, value: object) -> str | None:
        """Why `value` is refused ("nan is not a number from 0 to 1000"), or None if it is allowed."""
        return None if self.allows(value) else f"{value!r} is not {self}"
