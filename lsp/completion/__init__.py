"""Inline completion: FIM prompt layout, generation rules, post-processing and caches."""
