"""Plots. Plotting never computes: functions take scores/curves and return figures.

matplotlib is imported inside each function, so importing headlens stays light.
"""
