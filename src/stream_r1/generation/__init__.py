"""Video out of a checkpoint: the pipeline, prompt timelines, the generate command, MP4 and NPZ files."""
