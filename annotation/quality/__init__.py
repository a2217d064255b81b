"""Annotation quality: agreement, reliability-weighted aggregation and model leaderboards.

The metric modules (agreement, bootstrap, dawid_skene, bradley_terry) are plain numpy and import
no Django; `selectors` builds their arrays from the database and `report` assembles the results.
"""
