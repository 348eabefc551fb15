"""The networks of the main job and the benchmarks, for 1 x 28 x 28 images and 10 classes."""

from .nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential


def mlp(seed=0):
    return Sequential(Flatten(), Linear(784, 256), ReLU(), Linear(256, 128), ReLU(),
                      Linear(128, 10), seed=seed, input_shape=(1, 28, 28))


def lenet5(seed=0):
    return Sequential(
        Conv2d(1, 6, kernel_size=5, padding=2), ReLU(), MaxPool2d(2),
        Conv2d(6, 16, kernel_size=5), ReLU(), MaxPool2d(2),
        Flatten(), Linear(400, 120), ReLU(), Linear(120, 84), ReLU(), Linear(84, 10), seed=seed,
        input_shape=(1, 28, 28))


def convnet(seed=0):
    return Sequential(
        Conv2d(1, 32, 3, padding=1), ReLU(), Conv2d(32, 32, 3, padding=1), ReLU(), MaxPool2d(2),
        Conv2d(32, 64, 3, padding=1), ReLU(), Conv2d(64, 64, 3, padding=1), ReLU(), MaxPool2d(2),
        Flatten(), Linear(3136, 256), ReLU(), Linear(256, 10), seed=seed,
        input_shape=(1, 28, 28))


MODELS = {"mlp": mlp, "lenet5": lenet5, "convnet": convnet}
