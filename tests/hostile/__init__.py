"""Hostile peers on loopback and the bounds mxlens keeps against them (issue 9)."""
