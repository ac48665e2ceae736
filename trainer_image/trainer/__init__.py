"""tunestack's supervised fine-tuning trainer for the Vertex AI open-model dataset formats."""
