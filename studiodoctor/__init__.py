"""studiodoctor: the on-call engineer's doctor for Kolibri Studio's production stack."""

__version__ = "0.1.0"
