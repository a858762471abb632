"""``python -m otpagent``: the ``otpagent`` command (``serve`` starts its delivery process so)."""

from otpagent.cli import main

main()
