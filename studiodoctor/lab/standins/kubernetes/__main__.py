"""``python -m studiodoctor.lab.standins.kubernetes --port N --state FILE``: the stand-in as a process."""

from .launcher import main

main()
