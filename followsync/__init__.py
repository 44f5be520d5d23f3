"""followsync: keep the next follow-up with everyone you are chasing in your calendar."""

__version__ = "0.1.0"
