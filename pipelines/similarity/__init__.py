"""Image-similarity recommendation: exact all-pairs top-k on executors and an online recommender."""
