"""The specification: slow, obviously correct NumPy versions of every op, in float64.
The core's CPU (and CUDA) ops are checked against these, forward and backward."""

import math

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


# -- average pooling and the activations of issue 13 -----------------------------------------

def avgpool2d_forward(x, k, stride, pad):
    """x (N,C,H,W) -> (N,C,Ho,Wo): window means over x padded by zeros, divided by k*k
    (torch.nn.AvgPool2d, count_include_pad=True, floor mode)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    N, C, H, W = xp.shape
    y = np.empty((N, C, (H - k) // stride + 1, (W - k) // stride + 1))
    for i, j, win in _windows(xp, k, stride):
        y[:, :, i, j] = win.sum(axis=2) / (k * k)
    return y


def avgpool2d_backward(shape, dy, k, stride, pad):
    """dx (shape) of avgpool2d_forward: dy / (k*k) to every tap of each window."""
    N, C, H, W = shape
    dxp = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    _, _, Ho, Wo = dy.shape
    for i in range(Ho):
        for j in range(Wo):
            dxp[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += (
                dy[:, :, i, j, None, None] / (k * k))
    return dxp[:, :, pad:pad + H, pad:pad + W]


def _adaptive_windows(n, out):
    """torch's windows: [floor(i*n/out), ceil((i+1)*n/out)) for i < out."""
    return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]


def adaptive_avgpool2d_forward(x, out):
    """x (N,C,H,W) -> (N,C,out,out), each output the mean of its window."""
    H, W = x.shape[2:]
    y = np.empty(x.shape[:2] + (out, out))
    for i, (h0, h1) in enumerate(_adaptive_windows(H, out)):
        for j, (w0, w1) in enumerate(_adaptive_windows(W, out)):
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


def adaptive_avgpool2d_backward(shape, dy, out):
    H, W = shape[2:]
    dx = np.zeros(shape)
    for i, (h0, h1) in enumerate(_adaptive_windows(H, out)):
        for j, (w0, w1) in enumerate(_adaptive_windows(W, out)):
            dx[:, :, h0:h1, w0:w1] += dy[:, :, i, j, None, None] / ((h1 - h0) * (w1 - w0))
    return dx


def tanh_forward(x):
    return np.tanh(x)


def tanh_backward(y, dy):
    return dy * (1 - y * y)


def leaky_relu_forward(x, slope):
    return np.where(x > 0, x, slope * x)


def leaky_relu_backward(x, dy, slope):
    """From the input x, as torch."""
    return np.where(x > 0, dy, slope * dy)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu_forward(x):
    """x * Phi(x), Phi the standard normal CDF (torch.nn.GELU's exact form)."""
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def gelu_backward(x, dy):
    """dy * (Phi(x) + x * phi(x))."""
    return dy * (0.5 * (1 + _erf(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))


def gelu_tanh_forward(x):
    """x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): torch.nn.GELU(approximate='tanh')."""
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_tanh_backward(x, dy):
    """dy * d/dx of gelu_tanh_forward, by the chain rule through u and tanh."""
    u = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    du = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x ** 2)
    t = np.tanh(u)
    return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)


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


# -- normalisation and dropout ---------------------------------------------------------------

def _bn_view(x):
    """x (N,C), (N,C,L) or (N,C,H,W) -> (N, C, S) and the axes a channel's statistics span."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def batchnorm_forward(x, weight, bias, running_mean, running_var, eps, momentum, training,
                      count=None):
    """As torch.nn.functional.batch_norm: -> (y, (mean, inv_std) used, new running_mean,
    new running_var). Training: the batch's mean and biased variance normalise, the running
    estimates move by momentum towards the mean and the unbiased variance; momentum None (torch's
    cumulative average) moves them by 1 / count, count the batches seen with this one."""
    v = _bn_view(x)
    C = v.shape[1]
    weight = np.ones(C) if weight is None else weight
    bias = np.zeros(C) if bias is None else bias
    if training:
        m = v.shape[0] * v.shape[2]
        mean = v.mean(axis=(0, 2))
        var = ((v - mean[None, :, None]) ** 2).mean(axis=(0, 2))
        f = 1 / count if momentum is None else momentum
        running_mean = (1 - f) * running_mean + f * mean
        running_var = (1 - f) * running_var + f * var * m / (m - 1)
    else:
        mean, var = running_mean, running_var
    inv_std = 1 / np.sqrt(var + eps)
    xh = (v - mean[None, :, None]) * inv_std[None, :, None]
    y = xh * weight[None, :, None] + bias[None, :, None]
    return y.reshape(x.shape), (mean, inv_std), running_mean, running_var


def batchnorm_backward(x, weight, mean, inv_std, dy, training):
    """-> (dx, dweight, dbias) given the statistics the forward used. Training: the batch's
    statistics depend on x; evaluation: the backward of the affine map."""
    v, g = _bn_view(x), _bn_view(dy)
    C = v.shape[1]
    weight = np.ones(C) if weight is None else weight
    xh = (v - mean[None, :, None]) * inv_std[None, :, None]
    dbias = g.sum(axis=(0, 2))
    dweight = (g * xh).sum(axis=(0, 2))
    k = (weight * inv_std)[None, :, None]
    if training:
        m = v.shape[0] * v.shape[2]
        dx = k * (g - dbias[None, :, None] / m - xh * dweight[None, :, None] / m)
    else:
        dx = k * g
    return dx.reshape(x.shape), dweight, dbias


def philox4x32_10(counter, key):
    """Philox-4x32-10 of counters (n, 4) uint32 under key (k0, k1): (n, 4) uint32."""
    c = [counter[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    mask = np.uint64(0xFFFFFFFF)
    for r in range(10):
        if r:
            k0, k1 = (k0 + np.uint64(0x9E3779B9)) & mask, (k1 + np.uint64(0xBB67AE85)) & mask
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & mask, (p0 >> np.uint64(32)) ^ c[3] ^ k1,
             p0 & mask]
    return np.stack(c, axis=1).astype(np.uint32)


def dropout_stream_key(stream):
    """The key random stream ``stream`` (a data-parallel replica's index) mixes into the seed:
    splitmix64's finaliser of stream * golden ratio, 0 for stream 0."""
    if stream == 0:
        return 0
    m = 2**64 - 1
    z = stream * 0x9E3779B97F4A7C15 & m
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & m
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & m
    return z ^ (z >> 31)


def dropout_mask(seed, step, units, p):
    """Keep (True) or drop of units 0..units-1 at (seed, step): the top 24 bits of Philox word
    u % 4 of block u // 4 (counter: block, step as 64-bit pairs; key: seed) below
    round((1 - p) 2^24)."""
    blocks = np.arange((units + 3) // 4, dtype=np.uint64)
    ctr = np.stack([blocks & np.uint64(0xFFFFFFFF), blocks >> np.uint64(32),
                    np.full_like(blocks, step & 0xFFFFFFFF), np.full_like(blocks, step >> 32)],
                   axis=1).astype(np.uint32)
    words = philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32)).reshape(-1)[:units]
    return (words >> 8) < round((1 - p) * 2**24)


def dropout_forward(x, keep, p):
    """x * keep / (1 - p) (zeros for p = 1); keep broadcasts against x (Dropout2d: (N, C, 1, 1)).
    In x's dtype, the scale rounded to it first (float32 x: the core's result exactly)."""
    scale = np.asarray(0.0 if p == 1 else 1 / (1 - p), dtype=x.dtype)
    return x * np.where(keep, scale, np.zeros((), x.dtype))
