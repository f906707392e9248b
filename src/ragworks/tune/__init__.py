"""`ragworks tune`: fine-tune a collection's embedding model on its own data and switch to it atomically."""
