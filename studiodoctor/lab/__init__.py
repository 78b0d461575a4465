"""The lab: real servers on loopback (the same launchers the tests use), faults on demand."""
