"""A process-wide setting that code turns on for the extent of a ``with`` block (launches traced for
torch.compile, arrival counters made per call): one mechanism instead of a context-manager class per setting."""
import contextlib


class Switch:
    """Off unless inside ``with switch.turned_on():``; nested blocks restore the outer value on exit."""

    __slots__ = ('on',)

    def __init__(self):
        self.on = False

    @contextlib.contextmanager
    def turned_on(self):
        outer, self.on = self.on, True
        try:
            yield
        finally:
            self.on = outer
