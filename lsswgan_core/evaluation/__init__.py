"""The report: `evaluate` compares generated with real cubes and writes the paper's figures
(figures)."""
