"""longqa inside other frameworks (optional extras): ``llamaindex`` (``longqa[llama-index]``)."""
