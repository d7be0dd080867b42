"""Training: cached backbone features, projection heads, and (later) full schedules."""
