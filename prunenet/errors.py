"""One exception type for user-facing mistakes.

The CLI prints ``error: <message>`` on one line and exits with status 2 for these;
anything else is a bug and keeps its traceback.
"""


class PruneNetError(Exception):
    """A bad input (ratio, path, architecture, file) with a one-line message that names the fix."""


class BudgetMissed(PruneNetError):
    """A method's result removes a parameter count too far from the budget it was asked to meet.

    Raised after the method's work is done (:func:`prunenet.lowrank.budget.check_budget`): the scale rehearsal,
    which measures cost on random weights where a search may land off target, catches this one kind only, and reads
    ``meta``: the method's record of the work it did (its stage seconds, what it factored), which is lost otherwise.
    """

    def __init__(self, message: str, meta: dict | None = None) -> None:
        super().__init__(message)
        self.meta = dict(meta or {})
