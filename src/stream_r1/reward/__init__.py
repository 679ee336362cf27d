"""Reward models (the toy reward, VideoReward at paper scale) and how the toy rewards are trained."""
