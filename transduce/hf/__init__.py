"""Hugging Face MarianMT directories: import them as transduce model directories
(`marian_import`), export post-norm transduce Transformers as them (`marian_export`).
Neither needs `transformers`: files are read and written directly (docs/marian.md)."""
