"""Handlers of the headless commands added after the first release, one module each; tui/cli.py
only dispatches to them. Like cli.py, they never import Textual."""
