"""Stage 3: the result contract and everything that reads a fitted DataTree without refitting."""
