"""Text analysis and BM25 scoring shared by the store legs, evaluation and answer checks.

The floor below store/, retrieve/ and generate/: nothing here imports them."""
