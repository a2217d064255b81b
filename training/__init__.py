"""Everything that runs a model: registry, generation backends, AI feedback, trainers, runs."""
