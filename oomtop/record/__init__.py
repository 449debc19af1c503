"""Recording and replay: an append-only, framed, compressed file of Samples and OomEvents."""
