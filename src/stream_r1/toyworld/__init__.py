"""The embedded toy world: prompts, procedural videos, degradations and ToyBench. Knows nothing about models."""
