"""``adaptsam bench``: cross-evaluate backbones × adapters × policies × resolutions × datasets.

``spec`` defines the grid, ``runner`` runs one cell (build → policy → adapter → train → evaluate → measure),
``executors`` run many (locally or on Ray), ``store`` keeps every result in SQLite, ``report`` turns them
into tables and plots.
"""
