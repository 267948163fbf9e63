"""Hyper-parameter search on Optuna: `transduce tune CONFIG --space SPACE.yaml`.

space.py reads and checks the search space; folds.py writes cross-validation folds;
study.py runs trials (each one `transduce.train`) on an Optuna study in a database;
report.py prints the table of trials, writes the best config and plots.
"""
