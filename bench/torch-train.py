"""One training epoch in PyTorch, for bench/train-vs-torch.ts: the same architectures, batch,
optimizer and data as the TF.js side. Prints one JSON line: {"seconds": [...]} (one per repeat).

Usage: python3 bench/torch-train.py MODEL THREADS X.f32 Y.f32 COUNT REPEATS
MODEL: cnn (28x28 digits, 10 classes) or lstm (50x6 windows, 6 targets).
"""
import json
import sys
import time

import numpy as np
import torch
from torch import nn


def build(model):
    if model == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 5 * 5, 64), nn.ReLU(), nn.Linear(64, 10),
        )

    class Forecaster(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(6, 64, batch_first=True)
            self.head = nn.Linear(64, 6)

        def forward(self, x):
            _, (h, _) = self.lstm(x)
            return self.head(h[-1])

    return Forecaster()


def main():
    model_name, threads, x_path, y_path, count, repeats = sys.argv[1:7]
    torch.set_num_threads(int(threads))
    count = int(count)
    x = torch.from_numpy(np.fromfile(x_path, dtype=np.float32))
    y = torch.from_numpy(np.fromfile(y_path, dtype=np.float32))
    if model_name == "cnn":
        x = x.reshape(count, 1, 28, 28)
        y = y.long()
        loss_fn = nn.CrossEntropyLoss()
    else:
        x = x.reshape(count, 50, 6)
        y = y.reshape(count, 6)
        loss_fn = nn.MSELoss()
    torch.manual_seed(1)
    seconds = []
    for _ in range(int(repeats)):
        model = build(model_name)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
        started = time.perf_counter()
        order = torch.randperm(count)
        for start in range(0, count, 64):
            rows = order[start:start + 64]
            optimizer.zero_grad()
            loss = loss_fn(model(x[rows]), y[rows])
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    print(json.dumps({"seconds": seconds, "torch": torch.__version__}))


main()
