"""Source systems (simulator, files, SQL) and the source schema the data contract reads."""
