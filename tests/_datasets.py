"""Small synthetic datasets in the format `lsscore preprocess` writes, for training tests."""
import h5py
import numpy as np

from lsswgan_core.data import Transform


def lognormal_cubes(n_cubes: int, n: int, seed: int, sigma: float = 0.8) -> np.ndarray:
    """rho/rhobar cubes: exp of a smoothed Gaussian field, mean 1 (a crude cosmic web)."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n)[:, None, None] ** 2 + np.fft.fftfreq(n)[None, :, None] ** 2 \
        + np.fft.rfftfreq(n)[None, None, :] ** 2
    filt = np.exp(-k * (n / 6.0) ** 2)
    out = np.empty((n_cubes, n, n, n))
    for i in range(n_cubes):
        g = np.fft.irfftn(np.fft.rfftn(rng.standard_normal((n, n, n))) * filt, s=(n, n, n), axes=(0, 1, 2))
        g *= sigma / g.std()
        out[i] = np.exp(g - sigma**2 / 2)
    return out


def write_dataset(path, sizes=(32, 8, 16), n: int = 32, seed: int = 0, box_size: float = 256.0):
    """train/val/dg splits of transformed lognormal cubes with the preprocess attributes."""
    raw = {name: lognormal_cubes(m, n, seed + i) for i, (name, m) in
           enumerate(zip(("train", "val", "dg"), sizes))}
    transform = Transform(x_max=float(raw["train"].max()))
    with h5py.File(path, "w") as f:
        for name, x in raw.items():
            f.create_dataset(name, data=np.clip(transform(x), 0, None).astype(np.float32),
                             chunks=(1, n, n, n) if len(x) else None)
        attrs = {**transform.attrs(), "x_max": transform.x_max, "box_size": box_size,
                 "cube_size": box_size * n / 128, "grid": 128, "cube": n, "cubes_per_box": 8,
                 "scheme": "ngp", "seed": seed, "format_version": 1}
        for key, value in attrs.items():
            f.attrs[key] = value
    return path
