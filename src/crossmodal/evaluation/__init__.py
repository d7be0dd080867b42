"""Evaluation of encoders on datasets: cached embeddings, metrics, tables, zero-shot labels."""
