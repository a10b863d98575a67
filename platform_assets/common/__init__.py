"""What every stage shares: partitions, the asset keys other stages name, and catalog entries."""
