"""Measuring students: ToyBench evaluation, the paired comparison and its report, diagnoses, the demo table."""
