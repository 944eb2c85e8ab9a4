"""Risk-scoring networks on real credit data, trained and scored on Spark."""
