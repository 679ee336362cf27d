"""Stream-R1 itself (docs/method.md §3): inter-rollout weights, intra saliency weights, axis balancing."""
