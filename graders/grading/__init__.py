"""Grading a class: nbgrader's steps (prepare, grade), the executors that run the students'
notebooks (a local pool, a Dask cluster), the batch that ties them together, its settings."""
