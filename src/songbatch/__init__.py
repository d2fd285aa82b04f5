"""songbatch: batch renderer for audiobooks and albums."""

__version__ = "0.1.0"
