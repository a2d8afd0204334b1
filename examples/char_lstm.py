"""A character-level language model: an LSTM reads Shakespeare one character at a time and learns to
predict the next one. Trained with the engine as one would with PyTorch: windows of the text in a
TensorDataset, Embedding -> LSTM -> Linear, CrossEntropyLoss, Adam and gradient clipping.

    python examples/char_lstm.py     # ~1.67 nats/char (half the unigram entropy) in ~40 s on one core

Models this small run fastest with one BLAS thread; on a busy machine a multithreaded BLAS can be
several times slower, so try OPENBLAS_NUM_THREADS=1 (or OMP_NUM_THREADS=1) if a run crawls.

The figure to watch is the validation loss (nats per character) against the unigram entropy of the
characters: the loss of the best model that ignores context. Falling well below it means the model
learned to use what came before. ``main()`` returns the final metrics, so tests can call it with a
small budget; at the end it prints a sample of generated text.
"""
from __future__ import annotations

from pathlib import Path

import engine
from engine import nn

from char_data import DATA, CharData  # examples/char_data.py, beside this script
from char_train import fit, loaders, one_cycle, sample_from  # examples/char_train.py


class CharLSTM(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden_size: int = 256, num_layers: int = 1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x, state=None):
        """x: (N, L) character ids -> logits (N, L, vocab) and the LSTM's final (h, c)."""
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state


def generate(model: CharLSTM, data: CharData, prompt: str = "ROMEO:\n", length: int = 200,
             temperature: float = 0.8) -> str:
    model.eval()
    with engine.no_grad():
        device = next(model.parameters()).device
        logits, state = model(data.encode(prompt).unsqueeze(0).to(device))
        out = []
        for _ in range(length):
            nxt = sample_from(logits[:, -1], temperature)          # (1,)
            out.append(nxt)
            logits, state = model(nxt.unsqueeze(0), state)           # carry the state: one step at a time
    model.train()
    return prompt + data.decode(engine.cat(out))


def main(epochs: int = 5, seq_len: int = 64, batch_size: int = 32, lr: float = 1e-2, embed_dim: int = 64,
         hidden_size: int = 256, max_steps: int | None = None, clip: float = 1.0, seed: int = 0,
         path: Path = DATA, sample_length: int = 300, device: str = "cpu", verbose: bool = True) -> dict:
    """Train for ``epochs`` passes over the training windows (or ``max_steps`` steps, whichever comes
    first), printing losses as it goes; return the final metrics. ``device="cuda"`` trains on a GPU."""
    engine.manual_seed(seed)
    data = CharData(path, seq_len)
    entropy = data.unigram_entropy()
    train_loader, val_loader = loaders(data, batch_size)

    model = CharLSTM(data.vocab_size, embed_dim, hidden_size).to(device)
    optimizer = engine.optim.Adam(model.parameters(), lr=lr)
    scheduler, total_steps = one_cycle(optimizer, lr, epochs, len(train_loader), max_steps)
    if verbose:
        print(f"{len(data.chars)} distinct characters, unigram entropy {entropy:.3f} nats; "
              f"{len(train_loader.dataset)} training windows of {seq_len}")
    return fit(model, lambda m, x: m(x)[0], optimizer, scheduler, train_loader, val_loader, epochs=epochs,
               total_steps=total_steps, clip=clip, entropy=entropy, device=device, verbose=verbose,
               sample=(lambda: generate(model, data, length=sample_length)) if sample_length else None)


if __name__ == "__main__":
    metrics = main()
    print(f"validation loss {metrics['val_loss']:.3f} nats/char vs unigram entropy "
          f"{metrics['unigram_entropy']:.3f} in {metrics['seconds']:.1f}s")
