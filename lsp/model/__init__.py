"""The model layer: registry and installer, the inference backend interface, and its scheduler."""
