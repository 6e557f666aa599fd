"""``adaptsam bench``: cross-evaluate backbones × adapters × policies × resolutions × datasets.

``spec`` defines the grid, ``cell`` runs one cell (build → policy → adapter → train → evaluate → measure)
in a ``worker`` process of its own, ``executors`` run many (locally or on Ray), ``runner`` runs the grid and
then the ``timing`` phase, ``store`` keeps every result in SQLite, ``report`` turns them into tables and plots.
"""
