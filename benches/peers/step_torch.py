"""PyTorch (CPU) peer of the root `benches/step.rs`: whole training steps of the same four small
workloads, steps per second, on the CPU with 2 threads.

A step is forward, loss, backward, the global gradient norm (computed every step and kept as a
tensor with the loss, as dynlab's trainer logs both; never read back inside the step) and the
optimizer update (`zero_grad(set_to_none=True)` first).

Workloads: (a) grokking MLP, p = 97, one-hot pairs 194 -> 128 (exact GELU) -> 97, full batch of
4704 random pairs with random labels, cross-entropy, AdamW (wd 1.0); (b) MLP 256 -> 256 (ReLU)
-> 10 on 512 x 256 normal inputs, cross-entropy, Adam; (c) TMS 5-2, `ReLU(x W^T W + b)`, batch
1024 of uniform features masked by Bernoulli(0.05), MSE to the input, AdamW (wd 0.01, lr 5e-3);
(d) regression learner 20 -> 5 (ReLU) -> 1, batch 1, MSE to 0.5, SGD (lr 0.01). All Adam(W):
betas (0.9, 0.98), eps 1e-8, lr 1e-3 unless said. (c) and (d) also as 32 independent replicas:
stacked parameters `[32, ...]`, `torch.bmm` over the shared batch, per-replica losses summed for
the backward, per-replica gradient norms.

Also the quick grokking config in steady state, epochs/s: p = 23, one-hot pairs 46 -> 128 GELU
-> 23 on (a + b) mod p, 370 train / 159 test pairs of the 23 x 23 table, full batch, AdamW (lr
1e-2, wd 1.0); an epoch is one training step, train loss/accuracy from its forward, a no-grad
test forward (loss, accuracy) and one read of those 4 numbers and the gradient norm (`.tolist()`).

Timing: a warm-up of at least 10 steps (50 epochs for the quick config) and 1 s, then steps for
at least 3 s. Replicas are counted as replica-steps per second (stacked steps/s x 32), as in
dynlab's table.

Usage: `python3 benches/peers/step_torch.py` (from the repository root or anywhere); prints the
table and writes `benches/results/step-torch.csv` (temp file + rename; the file name prefixed
with `DYNLAB_BENCH_RESULTS` when set, as dynlab's benches do). `DYNLAB_TORCH_DEVICE=cuda` runs
the same steps on the GPU (data made on the CPU from the same seeds, then moved; each timed span
ends with `torch.cuda.synchronize()`), as `scripts/gpu-check.sh` does.
"""

import os
import time

import torch
import torch.nn.functional as F
from torch import nn

THREADS = 2
DEVICE = torch.device(os.environ.get("DYNLAB_TORCH_DEVICE", "cpu").strip() or "cpu")
REPLICAS = 32
SECONDS = 3.0


def mlp(sizes, act):
    """Two Linear layers around `act`, Kaiming-uniform weights (ReLU gain), zero biases."""
    layers = [nn.Linear(sizes[0], sizes[1]), act, nn.Linear(sizes[1], sizes[2])]
    for layer in (layers[0], layers[2]):
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers).to(DEVICE)


def on_device(t, grad=False):
    """`t` moved to the benchmark's device, a leaf that requires grad when `grad`."""
    t = t.to(DEVICE)
    return t.requires_grad_() if grad else t


def synchronize():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def one_hot_pairs(pairs, p):
    return torch.cat([F.one_hot(pairs[:, 0], p), F.one_hot(pairs[:, 1], p)], 1).float()


def adam_w(params, lr, wd):
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), eps=1e-8, weight_decay=wd)


def trainer(params, opt, loss_fn, replicas=False):
    """A step: losses (one per replica when `replicas`; their sum is differentiated), backward,
    gradient norm (per replica when `replicas`), update. Loss and norm stay tensors, logged."""
    logged = []

    def step():
        opt.zero_grad(set_to_none=True)
        losses = loss_fn()
        (losses.sum() if replicas else losses).backward()
        grads = [p.grad for p in params]
        if replicas:
            norm = sum(g.square().flatten(1).sum(1) for g in grads).sqrt()
        else:
            norm = torch.nn.utils.get_total_norm(grads)
        opt.step()
        logged.append((losses.detach(), norm))

    return step


def workloads():
    """(name, single-model step, 32-replica step or None)."""
    g = torch.Generator().manual_seed(0)

    # (a) grokking MLP, random pairs and labels.
    p, n = 97, 97 * 97 // 2
    xa = on_device(one_hot_pairs(torch.randint(0, p, (n, 2), generator=g), p))
    ya = on_device(torch.randint(0, p, (n,), generator=g))
    grok = mlp([2 * p, 128, p], nn.GELU())
    a = trainer(list(grok.parameters()), adam_w(grok.parameters(), 1e-3, 1.0),
                lambda: F.cross_entropy(grok(xa), ya))

    # (b) MLP 256-256-10, Adam.
    xb = on_device(torch.randn(512, 256, generator=g))
    yb = on_device(torch.randint(0, 10, (512,), generator=g))
    net = mlp([256, 256, 10], nn.ReLU())
    adam = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-8)
    b = trainer(list(net.parameters()), adam, lambda: F.cross_entropy(net(xb), yb))

    # (c) TMS 5-2; replicas share the batch.
    mask = torch.bernoulli(torch.full((1024, 5), 0.05), generator=g)
    xc = on_device(torch.rand(1024, 5, generator=g) * mask)
    w = on_device(nn.init.xavier_normal_(torch.empty(2, 5)), grad=True)
    bias = on_device(torch.zeros(5), grad=True)
    c = trainer([w, bias], adam_w([w, bias], 5e-3, 0.01),
                lambda: F.mse_loss(F.relu(xc @ w.T @ w + bias), xc))
    ws = torch.stack([nn.init.xavier_normal_(torch.empty(2, 5)) for _ in range(REPLICAS)])
    ws = on_device(ws, grad=True)
    bs = on_device(torch.zeros(REPLICAS, 1, 5), grad=True)
    xs = xc.expand(REPLICAS, -1, -1)

    def tms_stack():
        out = F.relu(torch.bmm(torch.bmm(xs, ws.transpose(1, 2)), ws) + bs)
        return (out - xs).square().mean((1, 2))

    cs = trainer([ws, bs], adam_w([ws, bs], 5e-3, 0.01), tms_stack, replicas=True)

    # (d) regression learner on one random bit vector, target 0.5, SGD.
    xd = on_device(torch.bernoulli(torch.full((1, 20), 0.5), generator=g))
    yd = on_device(torch.full((1, 1), 0.5))
    learner = mlp([20, 5, 1], nn.ReLU())
    d = trainer(list(learner.parameters()), torch.optim.SGD(learner.parameters(), lr=1e-2),
                lambda: F.mse_loss(learner(xd), yd))

    def kaiming(fan_in, fan_out):  # [R, in, out], Kaiming-uniform over fan-in
        w = torch.empty(REPLICAS, fan_out, fan_in)
        for r in range(REPLICAS):
            nn.init.kaiming_uniform_(w[r], nonlinearity="relu")
        return on_device(w.transpose(1, 2).contiguous(), grad=True)

    w1, w2 = kaiming(20, 5), kaiming(5, 1)
    b1 = on_device(torch.zeros(REPLICAS, 1, 5), grad=True)
    b2 = on_device(torch.zeros(REPLICAS, 1, 1), grad=True)
    xds = xd.expand(REPLICAS, -1, -1)

    def learner_stack():
        out = torch.bmm(F.relu(torch.bmm(xds, w1) + b1), w2) + b2
        return (out - 0.5).square().flatten()

    sgd = torch.optim.SGD([w1, b1, w2, b2], lr=1e-2)
    ds = trainer([w1, b1, w2, b2], sgd, learner_stack, replicas=True)
    return [
        ("grokking MLP p=97 (a)", a, None),
        ("MLP 256-256-10 b512 (b)", b, None),
        ("TMS 5-2 b1024 (c)", c, cs),
        ("regression 20-5-1 b1 (d)", d, ds),
    ]


def quick_grokking_epoch():
    """One epoch of the quick grokking config (p = 23), as a closure."""
    p = 23
    g = torch.Generator().manual_seed(1)
    pairs = torch.cartesian_prod(torch.arange(p), torch.arange(p))
    pairs = pairs[torch.randperm(p * p, generator=g)]
    labels = (pairs[:, 0] + pairs[:, 1]) % p
    n_train = int(0.7 * p * p)  # 370 train, 159 test
    x_train = on_device(one_hot_pairs(pairs[:n_train], p))
    x_test = on_device(one_hot_pairs(pairs[n_train:], p))
    y_train, y_test = on_device(labels[:n_train]), on_device(labels[n_train:])
    model = mlp([2 * p, 128, p], nn.GELU())
    params = list(model.parameters())
    opt = adam_w(params, 1e-2, 1.0)

    def epoch():
        opt.zero_grad(set_to_none=True)
        logits = model(x_train)
        loss = F.cross_entropy(logits, y_train)
        loss.backward()
        norm = torch.nn.utils.get_total_norm([q.grad for q in params])
        opt.step()
        with torch.no_grad():
            train_acc = (logits.argmax(1) == y_train).float().mean()
            test_logits = model(x_test)
            test_loss = F.cross_entropy(test_logits, y_test)
            test_acc = (test_logits.argmax(1) == y_test).float().mean()
            return torch.stack([loss.detach(), train_acc, test_loss, test_acc, norm]).tolist()

    return epoch


def measure(step, warmup=10):
    """Steps per second over at least SECONDS of steps after at least `warmup` steps and 1 s."""
    done, start = 0, time.perf_counter()
    while done < warmup or time.perf_counter() - start < 1.0:
        step()
        done += 1
    synchronize()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS or steps < 5:
        step()
        steps += 1
    synchronize()
    return steps / (time.perf_counter() - start)


def main():
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    if DEVICE.type == "cuda":
        device = f"{torch.cuda.get_device_name(DEVICE)} (torch {torch.__version__})"
    else:
        device = f"cpu ({torch.get_num_threads()} threads, torch {torch.__version__})"
    print(f"device: {device}")
    print(f"{'workload':<28} {'steps/s':>10} {'32 replicas/s':>16}")
    rows = [f"device,{device}", "workload,torch_steps_per_second,torch_replicas32_steps_per_second"]
    for name, single, replicas in workloads():
        rate = measure(single)
        stacked = f"{measure(replicas) * REPLICAS:.2f}" if replicas else ""
        print(f"{name:<28} {rate:>10.1f} {stacked:>16}")
        rows.append(f"{name},{rate:.2f},{stacked}")
    rate = measure(quick_grokking_epoch(), warmup=50)
    print(f"{'quick grokking epoch p=23':<28} {rate:>10.1f}")
    rows.append(f"quick grokking epoch p=23,{rate:.2f},")
    here = os.path.dirname(os.path.abspath(__file__))
    prefix = os.environ.get("DYNLAB_BENCH_RESULTS", "")
    out = os.path.join(here, "..", "results", f"{prefix}step-torch.csv")
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(rows) + "\n")
    os.replace(tmp, out)
    print(f"wrote {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
