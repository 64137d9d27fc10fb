"""Transports run a script on a host and return a Result. See base.py for the contract."""

from labctl.transport.base import Host, Result, Transport

__all__ = ["Host", "Result", "Transport"]
