"""Saving images: naming, embedded metadata and the atomic writer."""
