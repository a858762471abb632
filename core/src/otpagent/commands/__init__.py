"""The commands of the ``otpagent`` command line, one module per job.

:mod:`otpagent.cli` builds the command group from them (and from plugins' commands);
:mod:`~otpagent.commands.common` holds what every command shares: exit codes, one-line (or
JSON) errors, and ``--json`` output.
"""
