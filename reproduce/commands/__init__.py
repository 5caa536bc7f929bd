"""The `fcn` command (cli.py) and its subcommands: the layer that parses options and prints;
the library modules it calls hold no click."""
