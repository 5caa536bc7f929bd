"""Reporting: the paper's tables as data (paper.py, paper_data/), our runs beside them
(tables.py), figures (figures.py), the smoke run's check (smoke_check.py) and the export of
nets to Caffe (export.py)."""
