"""Suites: a suite file parsed and validated, the parity gate and fairness audit, and the pre-flight checklist."""
