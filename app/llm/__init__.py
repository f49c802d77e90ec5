"""LLM backends behind one small Generator protocol."""
