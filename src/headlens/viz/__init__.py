"""Plots. Plotting never computes: functions take scores/curves and return figures.

matplotlib is imported inside each function (through :func:`pyplot`), so importing headlens
stays light.
"""


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend unless one was already chosen."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
