"""Sample data: the demo data set and the factories tests, benchmarks and the lab share."""
