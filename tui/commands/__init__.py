"""Handlers of the headless commands added after the first release, one module each."""
