"""Test suite for imagegen."""
