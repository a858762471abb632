"""Benchmarks of otpagent (run with `python -m bench [part ...]` or `nox -s bench`).

The runner (``bench/__main__.py``) prints one table of figures, each beside a baseline measured
in the same run; parts live in ``bench/parts/`` and return ``bench.common.Row`` objects. This
marker imports nothing, so ``bench.routing`` and the parts load independently.
"""
