"""Job graphs: cell kinds and data jobs planned into one graph, the runner that hands it to an executor, the results lock, the progress board, the run summary and `pwmbench status`."""
