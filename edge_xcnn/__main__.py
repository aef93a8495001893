"""``python -m edge_xcnn`` is the ``edge-xcnn`` command."""

from edge_xcnn.cli import app

app(prog_name="edge-xcnn")
