"""Tables in and out, what their columns are, and the reversible encoder."""
