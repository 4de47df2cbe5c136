"""PyTorch (CPU) peer of the root `benches/zoo.rs`: training steps of the plasticity studies' model
families at batch 128, steps per second, on the CPU with 2 threads.

A step is forward, cross-entropy, backward, the global gradient norm (kept as a tensor, as dynlab's
trainer computes it every step) and plain SGD (lr 0.01), `zero_grad(set_to_none=True)` first. Inputs
are uniform in [0, 1), labels uniform over 10 classes, one fixed batch.

Models, written out here as the studies define them (torchvision is not needed):
- `convnet`: conv 3->32 k5, ReLU, max-pool 2; conv 32->64 k3, ReLU, pool; conv 64->128 k3, ReLU,
  pool; flatten 512 -> 128 -> 128 -> 10.
- `convnet_norm`: the same with NormConv2d convs (W / (||W_c|| + 1e-8) * s_c * sqrt(2)/sqrt(fan_in))
  and NormalizedWeightsLinear dense layers (W * rsqrt(mean_j W^2 + 1e-8) * g * sqrt(2)/sqrt(in)).
- `convnet_svd`: SVD convs (N diag|S| C reshaped, scale sqrt(2) * O / fan_in) and SVD linears
  (N diag|S| C * sqrt(2)).
- `convnet_fc_layer_norm`: LayerNorm after fc1 and fc2, before ReLU.
- `convnet_batch_norm`: BatchNorm2d after each conv, BatchNorm1d after fc1 and fc2, before ReLU.
- `deep_ffnn`: 784 -> 2000 -> 2000 -> 10, ReLU.
- `deep_ffnn_weight_norm_single_rescale`: hidden layers NormalizedWeightsLinear, last plain.
- `ffnn_normal_bn`: BatchNorm1d after each hidden layer, before ReLU.
- `vgg_custom`: VGG-16's 13 convs (3x3, padding 1, ReLU, pools), global average pool, classifier
  512 -> 4096 -> 4096 -> 10 with ReLU and dropout 0.5 (dynlab's 32 x 32 form, `pooled_side = 1`).
- `resnet_custom`: ResNet-18 (7x7/2 stem, BN, ReLU, 3x3/2 max-pool, 4 stages of 2 basic blocks,
  global pool, fc).

Timing: two warm-up steps, then steps until 4 s have passed (at least 2).

Usage: `python3 benches/peers/zoo_torch.py`; prints the table and writes
`benches/results/zoo-torch.csv` (temp file + rename; the name prefixed with `DYNLAB_BENCH_RESULTS`
when set). `DYNLAB_TORCH_DEVICE=cuda` runs the same steps on the GPU (the closing `.item()` of each
timed span waits for it), as `scripts/gpu-check.sh` does.
"""

import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

THREADS = 2
DEVICE = torch.device(os.environ.get("DYNLAB_TORCH_DEVICE", "cpu").strip() or "cpu")
BATCH = 128
CLASSES = 10
SECONDS = 4.0
K = math.sqrt(2.0)


class NormConv2d(nn.Module):
    def __init__(self, cin, cout, k, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, k, k))
        nn.init.kaiming_uniform_(self.weight, mode="fan_out", nonlinearity="relu")
        self.scale = nn.Parameter(torch.ones(cout))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.correction = K / math.sqrt(cin * k * k)
        self.padding = padding

    def forward(self, x):
        norm = self.weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-8
        w = self.weight / norm * self.scale.view(-1, 1, 1, 1) * self.correction
        return F.conv2d(x, w, self.bias, padding=self.padding)


class NormLinear(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin))
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.correction = K / math.sqrt(cin)

    def forward(self, x):
        inv = torch.rsqrt(self.weight.pow(2).mean(1, keepdim=True) + 1e-8)
        return F.linear(x, self.weight * inv * self.scale * self.correction, self.bias)


def orthogonal(rows, cols):
    w = torch.empty(rows, cols)
    nn.init.orthogonal_(w)
    return nn.Parameter(w)


class SvdLinear(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        r = min(cin, cout)
        self.n, self.c = orthogonal(cout, r), orthogonal(r, cin)
        self.sigma = nn.Parameter(torch.randn(r) * 0.1 + 1)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        w = (self.n * self.sigma.abs()) @ self.c * K
        return F.linear(x, w, self.bias)


class SvdConv2d(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        fan = cin * k * k
        r = min(cout, fan)
        self.n, self.c = orthogonal(cout, r), orthogonal(r, fan)
        self.sigma = nn.Parameter(torch.randn(r) * 0.3 + 1)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.shape = (cout, cin, k, k)
        self.scale = K * cout / fan

    def forward(self, x):
        w = ((self.n * self.sigma.abs()) @ self.c * self.scale).view(self.shape)
        return F.conv2d(x, w, self.bias)


class ConvNet(nn.Module):
    def __init__(self, variant):
        super().__init__()
        conv = {
            "convnet_norm": lambda i, o, k: NormConv2d(i, o, k),
            "convnet_svd": SvdConv2d,
        }.get(variant, nn.Conv2d)
        dense = {"convnet_norm": NormLinear, "convnet_svd": SvdLinear}.get(variant, nn.Linear)
        self.convs = nn.ModuleList([conv(3, 32, 5), conv(32, 64, 3), conv(64, 128, 3)])
        self.fcs = nn.ModuleList([dense(512, 128), dense(128, 128), dense(128, CLASSES)])
        if variant == "convnet_batch_norm":
            self.conv_norms = nn.ModuleList([nn.BatchNorm2d(c) for c in (32, 64, 128)])
            self.fc_norms = nn.ModuleList([nn.BatchNorm1d(128) for _ in range(2)])
        elif variant == "convnet_fc_layer_norm":
            self.conv_norms = nn.ModuleList([nn.Identity() for _ in range(3)])
            self.fc_norms = nn.ModuleList([nn.LayerNorm(128) for _ in range(2)])
        else:
            self.conv_norms = nn.ModuleList([nn.Identity() for _ in range(3)])
            self.fc_norms = nn.ModuleList([nn.Identity() for _ in range(2)])

    def forward(self, x):
        for conv, norm in zip(self.convs, self.conv_norms):
            x = F.max_pool2d(F.relu(norm(conv(x))), 2)
        x = x.flatten(1)
        for fc, norm in zip(self.fcs[:2], self.fc_norms):
            x = F.relu(norm(fc(x)))
        return self.fcs[2](x)


def deep_ffnn(variant):
    layers, width = [], 784
    for _ in range(2):
        layers.append(NormLinear(width, 2000) if "weight_norm" in variant else nn.Linear(width, 2000))
        if variant == "ffnn_normal_bn":
            layers.append(nn.BatchNorm1d(2000))
        layers.append(nn.ReLU())
        width = 2000
    layers.append(nn.Linear(width, CLASSES))
    return nn.Sequential(*layers)


def vgg16_32():
    layers, cin = [], 3
    for width, count in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(count):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
            cin = width
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    layers += [nn.Linear(512, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU()]
    layers += [nn.Dropout(), nn.Linear(4096, CLASSES)]
    return nn.Sequential(*layers)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (self.down(x) if self.down is not None else x))


def resnet18():
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for stage, width in enumerate((64, 128, 256, 512)):
        stride = 1 if stage == 0 else 2
        layers += [Block(cin, width, stride), Block(width, width, 1)]
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, CLASSES)]
    return nn.Sequential(*layers)


MODELS = [
    ("convnet", lambda: ConvNet("convnet"), (3, 32, 32)),
    ("convnet_norm", lambda: ConvNet("convnet_norm"), (3, 32, 32)),
    ("convnet_svd", lambda: ConvNet("convnet_svd"), (3, 32, 32)),
    ("convnet_fc_layer_norm", lambda: ConvNet("convnet_fc_layer_norm"), (3, 32, 32)),
    ("convnet_batch_norm", lambda: ConvNet("convnet_batch_norm"), (3, 32, 32)),
    ("deep_ffnn", lambda: deep_ffnn("deep_ffnn"), (784,)),
    ("deep_ffnn_weight_norm_single_rescale", lambda: deep_ffnn("weight_norm"), (784,)),
    ("ffnn_normal_bn", lambda: deep_ffnn("ffnn_normal_bn"), (784,)),
    ("vgg_custom", vgg16_32, (3, 32, 32)),
    ("resnet_custom", resnet18, (3, 32, 32)),
]


def steps_per_second(make, shape):
    torch.manual_seed(0)
    model = make().to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.rand(BATCH, *shape).to(DEVICE)
    y = torch.randint(0, CLASSES, (BATCH,)).to(DEVICE)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
        opt.step()
        return loss.detach(), norm

    for _ in range(2):
        loss, norm = step()
    loss.item(), norm.item()
    start, steps = time.perf_counter(), 0
    while steps < 2 or time.perf_counter() - start < SECONDS:
        loss, norm = step()
        steps += 1
    loss.item(), norm.item()
    return steps / (time.perf_counter() - start)


def main():
    torch.set_num_threads(THREADS)
    if DEVICE.type == "cuda":
        device = f"PyTorch {torch.__version__} {torch.cuda.get_device_name(DEVICE)}"
    else:
        device = f"PyTorch {torch.__version__} CPU, {THREADS} threads"
    print(device)
    rows = []
    for name, make, shape in MODELS:
        rate = steps_per_second(make, shape)
        print(f"{name:<38} {rate:10.2f} steps/s")
        rows.append(f"{name},{rate:.3f}")
    prefix = os.environ.get("DYNLAB_BENCH_RESULTS", "")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "benches", "results", f"{prefix}zoo-torch.csv")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"device,{device}\nmodel,steps_per_second\n" + "\n".join(rows) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
