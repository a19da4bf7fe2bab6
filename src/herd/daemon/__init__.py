"""herdd: the cluster daemon every node runs."""
