"""imagegen: one command-line image generator for local pipelines and remote gateways."""

__version__ = "0.1.0"
