"""The local backend: a model catalog as data, and the diffusers runner (torch imported lazily)."""
