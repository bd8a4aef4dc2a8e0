"""``python -m oms.cli`` is the ``oms`` command."""

from oms.cli.main import main

main()
