"""NormCode Server: hosts deployed NormCode plan packages and runs them with LLM agents."""

__version__ = "0.1.0"
