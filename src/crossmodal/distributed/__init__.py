"""Distributed embedding (Ray) into clip-retrieval's layout, and importing such folders."""
