"""Model: the challenge GPT and its layers."""
