"""What a job writes for people and tools: metrics, results.json and its roles, tables, summaries, sweep
collection, the W&B dashboard."""
