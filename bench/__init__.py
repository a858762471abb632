"""otpagent's benchmark suite: ``python -m bench [part ...]`` (or ``nox -s bench -- part ...``).

Parts return :class:`Row` objects; the runner prints them as one table and, for a full run,
writes it to ``docs/benchmarks.md`` with the machine it ran on.
"""

from bench.common import Context, Row

__all__ = ["Context", "Row"]
