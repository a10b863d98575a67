"""Features: the daily feature tables, the Feast registry and online store, the training set."""
