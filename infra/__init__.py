"""tunestack: open-model fine-tuning on Vertex AI as code."""
