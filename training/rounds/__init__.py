"""Rounds of the loop: generate → select → label → export → train → evaluate → generate."""
