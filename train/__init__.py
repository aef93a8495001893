"""Training side of edge-xcnn (installed as ``edge_xcnn.train``): datasets, recipes, loop, evaluation."""
