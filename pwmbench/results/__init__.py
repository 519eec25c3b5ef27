"""Result files: the Arrow tables and their schema, a cell's files (atomic writes, checkpoints' neighbours, progress), provenance."""
