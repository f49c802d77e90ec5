"""Application layer: settings, LLM backends, answering, routing, the QA service and the CLI."""
