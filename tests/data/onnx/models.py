"""Model definitions for the ONNX export script (plain PyTorch, no torchvision)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.short(x))

class ResNet18(nn.Module):
    """CIFAR-style ResNet-18 (3x3 stem, no max-pool), width configurable."""
    def __init__(self, width=64, classes=10):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(3, w, 3, 1, 1, bias=False); self.bn1 = nn.BatchNorm2d(w)
        cfg = [(w, 1), (2*w, 2), (4*w, 2), (8*w, 2)]
        layers, cin = [], w
        for cout, s in cfg:
            layers += [BasicBlock(cin, cout, s), BasicBlock(cout, cout, 1)]; cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(8*w, classes)
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)

class Transformer(nn.Module):
    """A small transformer classifier over continuous tokens [N, T, D]."""
    def __init__(self, d=16, heads=2, layers=2, t=6, classes=3):
        super().__init__()
        self.inp = nn.Linear(d, d)
        self.pos = nn.Parameter(torch.randn(1, t, d) * 0.1)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(nn.ModuleDict(dict(ln1=nn.LayerNorm(d), qkv=nn.Linear(d, 3*d), proj=nn.Linear(d, d), ln2=nn.LayerNorm(d), fc1=nn.Linear(d, 4*d), fc2=nn.Linear(4*d, d))))
        self.heads = heads; self.ln = nn.LayerNorm(d); self.head = nn.Linear(d, classes)
    def forward(self, x):
        n, t, d = x.shape
        h = self.inp(x) + self.pos
        for b in self.blocks:
            y = b['ln1'](h)
            q, k, v = b['qkv'](y).chunk(3, dim=-1)
            def split(z): return z.reshape(n, t, self.heads, d // self.heads).transpose(1, 2)
            q, k, v = split(q), split(k), split(v)
            att = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
            o = (att @ v).transpose(1, 2).reshape(n, t, d)
            h = h + b['proj'](o)
            h = h + b['fc2'](F.gelu(b['fc1'](b['ln2'](h))))
        return self.head(self.ln(h).mean(dim=1))

class TextClassifier(nn.Module):
    """Embedding + mean pooling + linear, over token ids [N, T]."""
    def __init__(self, vocab=50, d=8, classes=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, d); self.fc = nn.Linear(d, classes)
    def forward(self, ids):
        e = self.emb(ids)
        return self.fc(e.mean(dim=1))


class OpZoo(nn.Module):
    """One small network touching many ops the gradient builder supports, so that each rule is
    checked against autograd: ConvTranspose, LeakyReLU, ELU, Sigmoid, Softplus, clamp (Clip), pad
    (constant and reflect), slicing with steps, cat, split, squeeze/unsqueeze, sqrt, pow, where,
    expand, sum/mean reductions, LogSoftmax."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 3, 2, stride=2)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.fc = nn.Linear(3 * 4 * 4 + 4, 5)

    def forward(self, x):
        h = F.leaky_relu(self.conv(x), 0.1)                         # [N, 4, 8, 8]
        h = F.pad(h, (1, 1, 1, 1), mode="reflect")[:, :, 1:-1, 1:-1]  # reflect Pad + Slice
        u = torch.sigmoid(self.up(h))                                # ConvTranspose → [N, 3, 16, 16]
        u = self.pool(u)                                             # AveragePool → [N, 3, 8, 8]
        u = u[:, :, ::2, ::2]                                        # strided Slice → [N, 3, 4, 4]
        a, b = torch.split(u, [1, 2], dim=1)                         # Split
        u = torch.cat([F.elu(a), F.softplus(b)], dim=1)              # Concat
        s = torch.sqrt(u.pow(2) + 1.0)                               # Pow, Sqrt
        s = torch.where(s > 1.2, s, 2.0 * s)                         # Where
        v = h.mean(dim=(2, 3)).unsqueeze(-1).squeeze(-1)             # ReduceMean, Unsqueeze, Squeeze
        v = v.clamp(-0.5, 0.5) + v.sum(dim=1, keepdim=True).expand(-1, 4) * 0.1  # Clip, ReduceSum, Expand
        z = torch.cat([F.pad(s, (0, 0, 0, 0)).flatten(1), v], dim=1)
        return F.log_softmax(self.fc(z), dim=1)                      # LogSoftmax as the scores
