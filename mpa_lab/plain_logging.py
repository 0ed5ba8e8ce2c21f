"""The lab's own loggers, whatever Mininet did to the logging module.

Importing ``mininet.log`` makes every logger created afterwards in the
process a ``MininetLogger``: level 25 and a stderr handler of its own, which
writes each record without its newline.  A lab logger created that way
drops INFO, and prints its warnings and tracebacks on the terminal glued
to the next line, besides the run's log (mpa_lab/experiment/run_log.py).
"""

from __future__ import annotations

import logging


def lab_logger(name: str) -> logging.Logger:
    """The logger ``name``, a plain one (if it exists already, as it is)."""
    current = logging.getLoggerClass()
    logging.setLoggerClass(logging.Logger)
    try:
        return logging.getLogger(name)
    finally:
        logging.setLoggerClass(current)
