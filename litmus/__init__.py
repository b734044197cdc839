"""litmus: what the three packages share (only the exceptions, litmus.errors)."""
