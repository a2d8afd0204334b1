"""A small causal Transformer (a character-level GPT) on Shakespeare, trained with the engine as one
would with PyTorch: windows of the text in a TensorDataset; token and position embeddings; an
nn.TransformerEncoder whose self-attention is masked with
nn.Transformer.generate_square_subsequent_mask so that each position sees only the characters
before it; CrossEntropyLoss, AdamW, a one-cycle learning-rate schedule and gradient clipping.

    python examples/char_transformer.py     # ~1.83 nats/char (55% of the unigram entropy), ~40 s

Models this small run fastest with one BLAS thread; on a busy machine a multithreaded BLAS can be
several times slower, so try OPENBLAS_NUM_THREADS=1 (or OMP_NUM_THREADS=1) if a run crawls.

The figure to watch is the validation loss (nats per character) against the unigram entropy of the
characters: the loss of the best model that ignores context. ``main()`` returns the final metrics,
so tests can call it with a small budget; at the end it prints a sample of generated text.
"""
from __future__ import annotations

from pathlib import Path

import engine
from engine import nn

from char_data import DATA, CharData  # examples/char_data.py, beside this script
from char_train import fit, loaders, one_cycle, sample_from  # examples/char_train.py


class CharTransformer(nn.Module):
    """Token + learned position embeddings, ``num_layers`` pre-norm encoder layers under a causal
    mask, a final LayerNorm and a linear head over the characters."""

    def __init__(self, vocab_size: int, block_size: int, d_model: int = 64, nhead: int = 4,
                 num_layers: int = 2, dim_feedforward: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.block_size = block_size
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(block_size, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward or 4 * d_model, dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        self.head = nn.Linear(d_model, vocab_size)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        """x: (N, L) character ids, L <= block_size -> logits (N, L, vocab)."""
        length = x.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=x.device)  # -inf above the diagonal
        h = self.drop(self.tok(x) + self.pos(engine.arange(length, device=x.device)))
        return self.head(self.encoder(h, mask=mask, is_causal=True))


def generate(model: CharTransformer, data: CharData, prompt: str = "ROMEO:\n", length: int = 200,
             temperature: float = 0.8) -> str:
    model.eval()
    ids = data.encode(prompt).unsqueeze(0).to(next(model.parameters()).device)
    with engine.no_grad():
        for _ in range(length):
            logits = model(ids[:, -model.block_size:])                # the last block_size characters
            ids = engine.cat([ids, sample_from(logits[:, -1], temperature).unsqueeze(0)], 1)
    model.train()
    return data.decode(ids[0])


def main(epochs: int = 8, seq_len: int = 64, batch_size: int = 32, lr: float = 2e-2, d_model: int = 64,
         nhead: int = 4, num_layers: int = 2, dropout: float = 0.0, weight_decay: float = 0.01,
         max_steps: int | None = None, clip: float = 1.0, seed: int = 0, path: Path = DATA,
         sample_length: int = 300, device: str = "cpu", verbose: bool = True) -> dict:
    """Train for ``epochs`` passes over the training windows (or ``max_steps`` steps, whichever comes
    first), printing losses as it goes; return the final metrics. ``device="cuda"`` trains on a GPU."""
    engine.manual_seed(seed)
    data = CharData(path, seq_len)
    entropy = data.unigram_entropy()
    train_loader, val_loader = loaders(data, batch_size)

    model = CharTransformer(data.vocab_size, seq_len, d_model, nhead, num_layers, dropout=dropout).to(device)
    optimizer = engine.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)
    scheduler, total_steps = one_cycle(optimizer, lr, epochs, len(train_loader), max_steps)
    if verbose:
        print(f"{len(data.chars)} distinct characters, unigram entropy {entropy:.3f} nats; "
              f"{len(train_loader.dataset)} training windows of {seq_len}; "
              f"{sum(p.numel() for p in model.parameters()):,} parameters")
    return fit(model, lambda m, x: m(x), optimizer, scheduler, train_loader, val_loader, epochs=epochs,
               total_steps=total_steps, clip=clip, entropy=entropy, device=device, verbose=verbose,
               sample=(lambda: generate(model, data, length=sample_length)) if sample_length else None)


if __name__ == "__main__":
    metrics = main()
    print(f"validation loss {metrics['val_loss']:.3f} nats/char vs unigram entropy "
          f"{metrics['unigram_entropy']:.3f} in {metrics['seconds']:.1f}s")
