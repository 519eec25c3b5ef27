"""Statistics, decisions and reports: the statistics, the paired tests, the model-quality gate, the decision per candidate, scoring and the report."""
