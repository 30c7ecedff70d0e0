"""Checking exercise answers in the notebooks: a nudge for learners, an assertion for solutions."""

from __future__ import annotations

import math
import os

__all__ = ["check", "quick_mode"]


def quick_mode() -> bool:
    """True when ``RECSYS_TUTORIAL_QUICK=1``: notebooks shrink sizes and epochs for a live demo, same code."""
    return os.environ.get("RECSYS_TUTORIAL_QUICK", "0") == "1"


def check(answer, expected, name: str = "your answer", rel_tol: float = 1e-3, strict: bool = False) -> str:
    """Compare a learner's ``answer`` with ``expected`` (numbers within ``rel_tol``, anything else by ``==``).

    Returns a one-line verdict. An unanswered exercise (``answer is None``) is fine unless ``strict``;
    solution cells pass ``strict=True`` so a wrong solution fails the notebook's test run.
    """
    if answer is None:
        if strict:
            raise AssertionError(f"{name}: no answer given")
        return f"{name}: not answered yet. Replace None with your answer and run this cell again."
    if isinstance(expected, float) or isinstance(answer, float):
        correct = math.isclose(float(answer), float(expected), rel_tol=rel_tol)
    else:
        correct = answer == expected
    if strict and not correct:
        raise AssertionError(f"{name}: got {answer!r}, expected {expected!r}")
    return f"{name}: correct!" if correct else f"{name}: not quite ({answer!r}). Look at the hint and try again."
