from edge_xcnn.cli import app

app()
