"""An example stratkernel plugin package."""
