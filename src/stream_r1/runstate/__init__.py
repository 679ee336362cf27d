"""Resumable training state: atomic step checkpoints of one process, sharded DCP checkpoints of many."""
