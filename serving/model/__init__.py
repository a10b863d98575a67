"""The fraud model over HTTP: champion and canary from the registry, features from Feast."""
