"""The engine's demo: the seed's recurrent cell, next_h = tanh(h @ W_h.T + x @ W_x.T), trained by
plain gradient descent to predict the next value of a noisy sine wave. Run with `make run`."""
import math
import time

import engine

engine.manual_seed(0)
hidden, steps, batch = 16, 24, 32

W_h = (engine.randn(hidden, hidden) * (1 / math.sqrt(hidden))).requires_grad_()
W_x = (engine.randn(hidden, 1) * 0.5).requires_grad_()
W_out = (engine.randn(1, hidden) * (1 / math.sqrt(hidden))).requires_grad_()
params = [W_h, W_x, W_out]


def batch_of_waves():
    phase = engine.rand(batch, 1) * 2 * math.pi
    t = engine.arange(steps + 1).float().unsqueeze(0) * 0.3
    return (t + phase).sin() + 0.05 * engine.randn(batch, steps + 1)


def loss_on(waves):
    h = engine.zeros(batch, hidden)
    loss = 0.0
    for i in range(steps):
        x = waves[:, i:i + 1]
        h = engine.tanh(h @ W_h.T + x @ W_x.T)  # the seed's cell, a new graph every step
        prediction = h @ W_out.T
        loss = loss + ((prediction - waves[:, i + 1:i + 2]) ** 2).mean()
    return loss / steps


start = time.perf_counter()
lr = 0.1
for it in range(1, 301):
    loss = loss_on(batch_of_waves())
    loss.backward()
    with engine.no_grad():
        for p in params:
            p -= lr * p.grad
            p.grad = None
    if it == 1 or it % 50 == 0:
        print(f"step {it:4d}  loss {loss.item():.4f}")
print(f"trained {len(params)} weight matrices in {time.perf_counter() - start:.1f}s; "
      f"a final loss near the noise floor (~0.01) means the cell learned the wave")
