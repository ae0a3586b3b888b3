"""The fault matrix: a mixed workload (agents streaming metrics, a trickle of commands), one fault
per cell, and the delivery promises checked over the whole history read back from Kafka.

:func:`run_cell` runs one cell; :data:`FAULTS` names the faults; :func:`render` prints the table.
``python -m monitoring_testsupport.matrix --soak MINUTES --seed S`` runs random cells in a row.
"""

from monitoring_testsupport.matrix.cell import CellSettings, run_cell
from monitoring_testsupport.matrix.faults import FAULTS, Fault
from monitoring_testsupport.matrix.invariants import CellResult, Figure
from monitoring_testsupport.matrix.table import render, to_json

__all__ = ["FAULTS", "CellResult", "CellSettings", "Fault", "Figure", "render", "run_cell", "to_json"]
