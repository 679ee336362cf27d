"""Flow-matching schedules and samplers (pure functions of model, x and sigmas)."""
