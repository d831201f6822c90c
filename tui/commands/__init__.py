"""Handlers of the headless commands added after the first release, one module per command.

Each module offers `parser(parser_class, add_probe_options)` (its argparse parser) and
`run(ns, options_from_args)` (its exit status); tui/cli.py only registers and dispatches them.
Like cli.py, nothing here imports Textual.
"""
