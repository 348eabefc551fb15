"""heterocnn: train image classifiers on the CPU (OpenMP) and NVIDIA GPUs (CUDA), with the
API of torch.nn where the two have the same thing."""

from . import datasets, distributed, models
from .augment import Augment
from ._core import build_info as _core_build_info, cuda_device, cuda_device_count
from .checkpoint import load, save
from .costs import CostTable
from .data_parallel import DataParallel
from .device_data import DeviceDataset
from .early_stopping import EarlyStopping
from .errors import (DataFormatError, DeviceError, DeviceOutOfMemoryError, DTypeError,
                     HeteroCNNError, InvalidValueError, MissingExtraError, NonFiniteError,
                     ShapeError, StateDictError)
from .measure import measure
from .memory import check_memory, estimate_memory
from .metrics import confusion_matrix, format_confusion, loss_and_accuracy, per_class_accuracy
from .nn import Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential, Sigmoid
from .nn import BatchNorm1d, BatchNorm2d, Dropout, Dropout2d
from .nn import GELU, AdaptiveAvgPool2d, AvgPool2d, LeakyReLU, Tanh
from .onnx_export import export_onnx
from .optim import SGD, Adam, AdamW
from .placement import Plan, plan
from .rebalance import Rebalancer
from .preprocess import load_image
from .recipe import Recipe, WarmupCosine, default_recipe
from .reports import plot_history, read_history_csv, write_history_csv
from .summary import Summary
from .threads import set_threads
from .training import evaluate, fit, predict

__version__ = _core_build_info()["version"]


def build_info():
    """What this build contains: version, OpenMP (and its thread count), the CPU GEMM kernel,
    whether CUDA was compiled in and is available, each GPU's name, compute capability and
    memory, and whether ReLUs are fused into the layers beside them ("relu_fusion": off with
    HC_RELU_FUSION=0 in the environment at start)."""
    info = _core_build_info()
    info["cuda_available"] = cuda_available()
    info["gpus"] = [cuda_device(i) for i in range(cuda_device_count())]
    return info


def cuda_available():
    """True when this build has CUDA and at least one usable GPU is present."""
    return cuda_device_count() > 0


__all__ = [
    "Adam", "AdamW", "Augment", "Conv2d", "CostTable", "DataFormatError", "DataParallel", "DeviceDataset",
    "DeviceError", "DeviceOutOfMemoryError", "DTypeError", "EarlyStopping", "Flatten",
    "HeteroCNNError", "InvalidValueError", "Linear", "MaxPool2d", "MissingExtraError", "Module",
    "NonFiniteError", "Plan", "ReLU", "Rebalancer", "Recipe", "SGD", "Sequential", "ShapeError",
    "Sigmoid", "StateDictError", "Summary", "build_info", "check_memory", "confusion_matrix",
    "cuda_available", "cuda_device", "cuda_device_count", "datasets", "default_recipe", "distributed",
    "estimate_memory", "evaluate", "export_onnx", "fit", "format_confusion", "load",
    "load_image", "loss_and_accuracy", "measure", "models", "per_class_accuracy", "plan",
    "plot_history", "predict", "read_history_csv", "save", "set_threads", "WarmupCosine",
    "write_history_csv",
    "BatchNorm1d", "BatchNorm2d", "Dropout", "Dropout2d",
    "AdaptiveAvgPool2d", "AvgPool2d", "GELU", "LeakyReLU", "Tanh",
]
