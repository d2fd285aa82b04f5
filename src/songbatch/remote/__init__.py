"""Rendering through the Replicate API: the client wrapper, input mapping and the executor."""
