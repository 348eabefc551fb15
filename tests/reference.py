"""The specification: slow, obviously correct NumPy versions of every op, in float64.
The core's CPU (and CUDA) ops are checked against these, forward and backward."""

import numpy as np


def im2col(x, k, stride, pad):
    """x (C,H,W) -> col (C*k*k, Ho*Wo)."""
    C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    col = np.empty((C, k, k, Ho, Wo), dtype=x.dtype)
    for kh in range(k):
        for kw in range(k):
            col[:, kh, kw] = xp[:, kh:kh + stride * Ho:stride, kw:kw + stride * Wo:stride]
    return col.reshape(C * k * k, Ho * Wo)


def col2im(col, shape, k, stride, pad):
    """The adjoint of im2col: col (C*k*k, Ho*Wo) -> x (C,H,W)."""
    C, H, W = shape
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    col = col.reshape(C, k, k, Ho, Wo)
    xp = np.zeros((C, H + 2 * pad, W + 2 * pad), dtype=col.dtype)
    for kh in range(k):
        for kw in range(k):
            xp[:, kh:kh + stride * Ho:stride, kw:kw + stride * Wo:stride] += col[:, kh, kw]
    return xp[:, pad:pad + H, pad:pad + W]


def conv2d_forward(x, w, b, stride, pad):
    """x (N,C,H,W), w (M,C,k,k), b (M,) -> y (N,M,Ho,Wo), by the definition (no im2col)."""
    N, C, H, W = x.shape
    M, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    y = np.empty((N, M, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            window = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            y[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return y


def conv2d_backward(x, w, dy, stride, pad):
    """-> dx (N,C,H,W), dw (M,C,k,k), db (M,)"""
    N, C, H, W = x.shape
    M, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp, dtype=np.float64)
    dw = np.zeros(w.shape)
    _, _, Ho, Wo = dy.shape
    for i in range(Ho):
        for j in range(Wo):
            window = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            g = dy[:, :, i, j]  # (N,M)
            dw += np.tensordot(g, window, axes=([0], [0]))
            dxp[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += np.tensordot(
                g, w, axes=([1], [0]))
    return dxp[:, :, pad:pad + H, pad:pad + W], dw, dy.sum(axis=(0, 2, 3))


def linear_forward(x, w, b):
    """x (N,I), w (O,I), b (O,) -> (N,O)"""
    return x @ w.T + b


def linear_backward(x, w, dy):
    """-> dx (N,I), dw (O,I), db (O,)"""
    return dy @ w, dy.T @ x, dy.sum(axis=0)


def _windows(x, k, stride):
    N, C, H, W = x.shape
    Ho, Wo = (H - k) // stride + 1, (W - k) // stride + 1
    for i in range(Ho):
        for j in range(Wo):
            yield i, j, x[:, :, i * stride:i * stride + k, j * stride:j * stride + k].reshape(N, C, -1)


def maxpool2d_forward(x, k, stride):
    """x (N,C,H,W) -> (N,C,Ho,Wo)"""
    N, C, H, W = x.shape
    y = np.empty((N, C, (H - k) // stride + 1, (W - k) // stride + 1))
    for i, j, win in _windows(x, k, stride):
        y[:, :, i, j] = win.max(axis=2)
    return y


def maxpool2d_backward(x, dy, k, stride):
    """Each output's gradient goes to the first maximum of its window."""
    dx = np.zeros(x.shape)
    N, C = x.shape[:2]
    for i, j, win in _windows(x, k, stride):
        arg = win.argmax(axis=2)
        for n in range(N):
            for c in range(C):
                dx[n, c, i * stride + arg[n, c] // k, j * stride + arg[n, c] % k] += dy[n, c, i, j]
    return dx


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(y, dy):
    return dy * (y > 0)


def sigmoid_forward(x):
    return 0.5 * (1 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow


def sigmoid_backward(y, dy):
    return dy * y * (1 - y)


def softmax_cross_entropy(z, labels, label_smoothing=0.0):
    """z (N,K), labels (N,) -> mean loss, dz (N,K), against the target
    q = (1 - label_smoothing) * onehot + label_smoothing / K (torch.nn.CrossEntropyLoss)"""
    N, K = z.shape
    zs = z - z.max(axis=1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
    q = (1 - label_smoothing) * np.eye(K)[labels] + label_smoothing / K
    return -(logp * q).sum() / N, (np.exp(logp) - q) / N


def sigmoid_bce(z, labels):
    """z (N,1), labels (N,) in {0,1} -> mean loss, dz (N,1)"""
    z1, y = z[:, 0], labels.astype(np.float64)
    loss = np.maximum(z1, 0) - z1 * y + np.log1p(np.exp(-np.abs(z1)))
    return loss.mean(), ((sigmoid_forward(z1) - y) / len(z1))[:, None]


def sgd_step(p, g, v, lr, momentum, weight_decay, dampening=0.0, nesterov=False, first=False):
    """torch.optim.SGD: -> new p, new v. ``first``: the first step, where torch's buffer is
    the gradient itself (no dampening)."""
    g = g + weight_decay * p
    if not momentum:
        return p - lr * g, g
    v = g if first else momentum * v + (1 - dampening) * g
    return p - lr * (g + momentum * v if nesterov else v), v


def adam_step(p, g, m, v, t, lr, betas, eps, weight_decay, decoupled=False):
    """torch.optim.Adam at step t (1, 2, ...), torch.optim.AdamW with ``decoupled``:
    -> new p, new m (exp_avg), new v (exp_avg_sq)"""
    b1, b2 = betas
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v
