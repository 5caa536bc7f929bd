"""HHA encoding of a depth map (Gupta et al., ECCV 2014), equal to their MATLAB `saveHHA.m`.

HHA = three uint8 channels per pixel, in this (RGB) order:
  1. horizontal disparity  31000 / max(z, 100), z in centimetres;
  2. height above the lowest point of the scene, in centimetres;
  3. angle between the surface normal and the gravity direction, in degrees, plus 38.

The steps follow rcnn-depth's `saveHHA.m` -> `processDepthImage.m` and rgbdutils'
`computeNormalsSquareSupport.m`, `getYDir.m`, `getRMatrix.m`, `rotatePC.m`, in the same order of
floating-point operations where that order can change a rounded output value:

- the point cloud from z and the camera matrix (1-based pixel coordinates, as MATLAB's meshgrid);
- normals by least-squares plane fitting over a (2r+1) x (2r+1) window (r = 3 for the angle
  channel, r = 10 for the gravity estimate): per-pixel sums of the products of (X/Z, Y/Z, 1) and
  1/Z over the window (MATLAB's `filter2` with zero padding), a 3x3 adjugate solve, normalization,
  then the sign flips that make the normals point as the original's do. Missing pixels are left
  out of every window sum;
- gravity: start at y0 = (0, 1, 0); twice (thresholds 45 then 15 degrees, 5 iterations each)
  collect the normals nearly parallel ("floor") and nearly perpendicular ("wall") to the current
  estimate and take the eigenvector of  W'W - F'F  with the smallest eigenvalue;
- rotate the point cloud so gravity is the y axis; height = -y minus its minimum (the minimum is
  replaced by -130 when it is above -90, as the original does);
- MATLAB's `uint8()`: round half away from zero, saturate to 0..255, NaN -> 0. The angle of a
  pixel without a normal (NaN) becomes 180 degrees because MATLAB's `max(-1, NaN)` is -1.

Plain numpy, vectorized (no per-pixel Python loops), no BLAS threads: about 0.1 s of CPU for
a 640 x 480 frame. On the demo frame of Depth2HHA-python, used as its own raw depth, the output
equals the MATLAB output on every pixel and channel (tests/test_hha.py). With a missing mask,
windows with very few valid points give ill-conditioned plane fits whose normals (and, through
the gravity estimate, a few heights) depend on the order in which the window sums are added;
there no implementation can promise MATLAB's bits without MATLAB's `conv2` order (see
`box_sums`). On the demo frame with its raw-depth mask, 98% of the pixels equal the Python port's
published output, about as many as the port's own code gives today.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "NYUD_COLOR_CAMERA",
    "camera_matrix",
    "hha",
    "box_sum",
    "box_sums",
    "point_cloud",
    "surface_normals",
    "surface_normals_radii",
    "gravity_direction",
    "rotation_between",
    "matlab_uint8",
]

# NYUDv2 Kinect colour camera (the NYU toolbox's camera_params.m; rcnn-depth's getCameraParam('color')).
NYUD_COLOR_FX = 518.857901
NYUD_COLOR_FY = 519.469611
NYUD_COLOR_CX = 325.582449
NYUD_COLOR_CY = 253.736166


def camera_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """The 3x3 pinhole camera matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (pixels, 1-based centre)."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


NYUD_COLOR_CAMERA = camera_matrix(NYUD_COLOR_FX, NYUD_COLOR_FY, NYUD_COLOR_CX, NYUD_COLOR_CY)
NYUD_COLOR_CAMERA.setflags(write=False)

# processDepthImage.m
NORMAL_RADIUS = 3            # normals for the angle channel
GRAVITY_NORMAL_RADIUS = 10   # normals for the gravity estimate
GRAVITY_ANGLE_THRESHOLDS_DEG = (45.0, 15.0)
GRAVITY_ITERATIONS = (5, 5)
GRAVITY_Y0 = (0.0, 1.0, 0.0)


def hha(depth_m: np.ndarray, camera: np.ndarray, missing: np.ndarray | None = None,
        *, frame: str | None = None) -> np.ndarray:
    """HHA image of one depth map, equal to Gupta et al.'s `saveHHA.m`.

    depth_m: H x W floating-point depth in metres (the filled depth), finite and >= 0.
    camera:  3x3 camera matrix (fx, fy on the diagonal, cx, cy in the last column, 1-based pixels),
             e.g. `NYUD_COLOR_CAMERA`.
    missing: H x W bool, True where the raw depth was missing (raw depth == 0); those pixels are
             left out of the normal fits. None means the depth is its own raw depth, i.e. missing
             where depth_m == 0 (saveHHA called with D as RD).
    frame:   a name for the frame, used in error messages.
    Returns H x W x 3 uint8: disparity, height, angle (RGB order; write it as an RGB PNG).
    Raises ValueError naming the frame for a wrong shape or dtype, non-finite or negative depth,
    a bad camera matrix or a frame without any valid depth.
    """
    depth_m, camera, missing = _checked_inputs(depth_m, camera, missing, frame)
    # saveHHA: processDepthImage(D*100, ...), which works in centimetres.
    z_cm = depth_m * 100.0
    x, y, z = point_cloud(z_cm, camera)
    # processDepthImage passes z./100 to computeNormalsSquareSupport, which multiplies by 100 again.
    normals, normals_big = surface_normals_radii(z_cm / 100.0, missing,
                                                 (NORMAL_RADIUS, GRAVITY_NORMAL_RADIUS), camera)
    y_dir = gravity_direction(normals_big)
    r = rotation_between(np.array(GRAVITY_Y0), y_dir)

    # rotatePC(pc, R'); only the rotated y coordinate is needed.
    if np.array_equal(r.T, np.eye(3)):
        y_rot = y
    else:
        rt = r.T
        y_rot = rt[1, 0] * x + rt[1, 1] * y + rt[1, 2] * z
    height = -y_rot
    y_min = np.min(height)   # prctile(h(:), 0)
    if y_min > -90:
        y_min = -130.0
    height = height - y_min

    cos_angle = (normals[..., 0] * y_dir[0] + normals[..., 1] * y_dir[1]) + normals[..., 2] * y_dir[2]
    # MATLAB's min/max skip NaN: min(1, max(-1, NaN)) = -1, so a pixel without a normal gets 180 deg.
    cos_angle = np.fmin(1.0, np.fmax(-1.0, cos_angle))
    angle = np.degrees(np.arccos(cos_angle))

    out = np.empty(depth_m.shape + (3,), dtype=np.uint8)
    out[..., 0] = matlab_uint8(31000.0 / np.maximum(z, 100.0))
    out[..., 1] = matlab_uint8(height)
    out[..., 2] = matlab_uint8((angle + 128.0) - 90.0)
    return out


def matlab_uint8(values: np.ndarray) -> np.ndarray:
    """MATLAB's uint8(double): round half away from zero, saturate to [0, 255], NaN -> 0."""
    v = np.asarray(values, dtype=np.float64)
    whole = np.trunc(v)
    with np.errstate(invalid="ignore"):   # inf - inf: saturated below anyway
        frac = v - whole                  # exact in binary floating point
    rounded = whole + np.where(np.abs(frac) >= 0.5, np.sign(v), 0.0)
    rounded = np.nan_to_num(rounded, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(rounded, 0, 255).astype(np.uint8)


def point_cloud(z: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """getPointCloudFromZ: X, Y, Z (each H x W, same unit as z) for 1-based pixel coordinates."""
    h, w = z.shape
    cols = np.arange(1, w + 1, dtype=np.float64)[None, :]
    rows = np.arange(1, h + 1, dtype=np.float64)[:, None]
    x = (cols - camera[0, 2]) * z / camera[0, 0]
    y = (rows - camera[1, 2]) * z / camera[1, 1]
    return x, y, z


def box_sum(stack: np.ndarray, radius: int) -> np.ndarray:
    """Sum over the (2r+1) x (2r+1) window around every pixel, zero outside the image.

    stack: C x H x W float64. Equals MATLAB's `filter2(ones(2r+1), f)` per channel up to the order
    of additions. See `box_sums`.
    """
    return box_sums(stack, (radius,))[0]


def box_sums(stack: np.ndarray, radii: tuple[int, ...]) -> list[np.ndarray]:
    """`box_sum` for several radii at once (one C x H x W array per radius).

    The sums are built by doubling (runs of 1, 2, 4, 8, 16 pixels, shared between the radii, then
    the binary pieces of 2r+1), a row pass then a column pass, one channel at a time so the
    working set stays in cache. Additions only: a window holding only zeros gives exactly 0, one
    or two nonzero terms give exactly their (rounded) sum as in MATLAB, and an infinite term
    (1/Z at an unmasked zero depth) stays infinite. A running or cumulative sum would instead
    leave rounding residue in empty windows and turn them into spurious normals.
    """
    radii = tuple(int(r) for r in radii)
    out = [np.empty(stack.shape, dtype=np.float64) for _ in radii]
    for c in range(stack.shape[0]):
        rows = _window_sums(stack[c], radii, axis=1)
        for k, r in enumerate(radii):
            out[k][c] = _window_sums(rows[k], (r,), axis=0)[0]
    return out


def _window_sums(a: np.ndarray, radii: tuple[int, ...], axis: int) -> list[np.ndarray]:
    """Sums of the 2r+1 values centred on each position along `axis` (zeros beyond the ends)."""
    n = a.shape[axis]
    pad = max(radii)
    shape = list(a.shape)
    shape[axis] = n + 2 * pad
    padded = np.zeros(shape, dtype=np.float64)

    def take(arr: np.ndarray, start: int, length: int) -> np.ndarray:
        index = [slice(None)] * arr.ndim
        index[axis] = slice(start, start + length)
        return arr[tuple(index)]

    take(padded, pad, n)[...] = a
    # runs[k][i] = padded[i] + ... + padded[i + k - 1] for k = 1, 2, 4, ... <= widest window
    runs = {1: padded}
    k = 1
    while 2 * k <= 2 * pad + 1:
        length = runs[k].shape[axis] - k
        runs[2 * k] = take(runs[k], 0, length) + take(runs[k], k, length)
        k *= 2
    results = []
    for r in radii:
        width, offset, total = 2 * r + 1, pad - r, None
        bit = k
        pieces = []
        while bit >= 1:
            if width & bit:
                pieces.append(take(runs[bit], offset, n))
                offset += bit
            bit //= 2
        total = pieces[0] + pieces[1] if len(pieces) > 1 else pieces[0].copy()
        for piece in pieces[2:]:
            total += piece
        results.append(total)
    return results


def surface_normals(depth_m: np.ndarray, missing: np.ndarray, radius: int,
                    camera: np.ndarray) -> np.ndarray:
    """computeNormalsSquareSupport (one superpixel): unit normals H x W x 3 by plane fitting.

    depth_m in metres (converted to centimetres as the original does); missing pixels are left
    out of the window sums. A pixel whose window gives no plane (too few points, or an unmasked
    zero depth in it) gets NaN.
    """
    return surface_normals_radii(depth_m, missing, (radius,), camera)[0]


def surface_normals_radii(depth_m: np.ndarray, missing: np.ndarray, radii: tuple[int, ...],
                          camera: np.ndarray) -> list[np.ndarray]:
    """`surface_normals` for several window radii, sharing the per-pixel terms (same results)."""
    depth_cm = depth_m * 100.0
    xf, yf, zf = point_cloud(depth_cm, camera)   # unmasked: only used to orient the normals
    terms = _plane_fit_terms(xf, yf, zf, missing)
    return [_normals_from_sums(sums, xf, yf, zf) for sums in box_sums(terms, radii)]


def _plane_fit_terms(xf: np.ndarray, yf: np.ndarray, zf: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """9 x H x W: AtARaw = (X/Z)^2, (X/Z)(Y/Z), X/Z, (Y/Z)^2, Y/Z, 1 and AtbRaw = X/Z^2, Y/Z^2, 1/Z.

    The plane n.p = 1 through the window's points, in the original's parametrization. Missing
    pixels and 0/0 (unmasked zero depth) give 0, as filterItChopOff's f(isnan(f)) = 0 does;
    1/0 stays Inf.
    """
    terms = np.empty((9,) + zf.shape, dtype=np.float64)
    xz_sq, xz_yz, x_z, yz_sq, y_z, one, x_zz, y_zz, inv_z = terms    # views, filled in place
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(xf, zf, out=x_z)
        np.divide(yf, zf, out=y_z)
        np.multiply(x_z, x_z, out=xz_sq)
        np.multiply(x_z, y_z, out=xz_yz)
        np.multiply(y_z, y_z, out=yz_sq)
        one[...] = 1.0
        zz = zf * zf
        np.divide(xf, zz, out=x_zz)
        np.divide(yf, zz, out=y_zz)
        np.divide(1.0, zf, out=inv_z)
    # the original sets X, Y, Z of missing pixels to NaN, then every NaN term to 0
    np.copyto(terms, 0.0, where=np.isnan(terms) | missing)
    return terms


def _normals_from_sums(sums: np.ndarray, xf: np.ndarray, yf: np.ndarray, zf: np.ndarray) -> np.ndarray:
    """Unit normals H x W x 3 from the window sums of `_plane_fit_terms` (invertIt, mutiplyIt, signs)."""
    a1, a2, a3, a4, a5, a6, b1, b2, b3 = sums
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        # Adjugate of the symmetric AtA (invertIt); the determinant only scales N and b.
        adj_a = a4 * a6 - a5 * a5
        adj_d = -(a2 * a6 - a3 * a5)
        adj_g = a2 * a5 - a3 * a4
        adj_e = a1 * a6 - a3 * a3
        adj_h = -(a1 * a5 - a2 * a3)
        adj_k = a1 * a4 - a2 * a2
        # mutiplyIt
        n1 = (adj_a * b1 + adj_d * b2) + adj_g * b3
        n2 = (adj_d * b1 + adj_e * b2) + adj_h * b3
        n3 = (adj_g * b1 + adj_h * b2) + adj_k * b3
        norm = np.sqrt((n1 * n1 + n2 * n2) + n3 * n3)
        n1 /= norm
        n2 /= norm
        n3 /= norm

        # Re-orient: first make n3 >= 0, then flip where N . (X, Y, Z) < 0 (sign 0 or NaN -> +1).
        sn = np.sign(n3)
        sn[sn == 0] = 1.0
        n1 *= sn
        n2 *= sn
        n3 *= sn
        sn = np.sign((n1 * xf + n2 * yf) + n3 * zf)
        sn[np.isnan(sn) | (sn == 0)] = 1.0
    return np.stack([n1 * sn, n2 * sn, n3 * sn], axis=-1)


def gravity_direction(normals: np.ndarray,
                      thresholds_deg: tuple[float, ...] = GRAVITY_ANGLE_THRESHOLDS_DEG,
                      iterations: tuple[int, ...] = GRAVITY_ITERATIONS,
                      y0: tuple[float, float, float] = GRAVITY_Y0) -> np.ndarray:
    """getYDir: the gravity direction (unit 3-vector, camera frame) from an H x W x 3 normal field.

    Normals whose first component is NaN are dropped. Each pass runs `iterations[i]` hard
    assignments with threshold `thresholds_deg[i]`: "floor" normals |n.y| > cos(t), "wall"
    normals |n.y| < sin(t); the new direction is the eigenvector of W'W - F'F with the smallest
    eigenvalue, signed to agree with the previous one. W'W - F'F is accumulated as one weighted sum
    rather than MATLAB's two matrix products: the same numbers up to rounding in the last bits.
    """
    nn = normals.reshape(-1, 3)
    nn = nn[~np.isnan(nn[:, 0])]
    nx, ny, nz = (np.ascontiguousarray(c) for c in nn.T)
    # The 6 distinct entries of n n' per normal; then W'W - F'F = sum over normals of
    # (is_wall - is_floor) n n'. Plain numpy (einsum, no BLAS): no thread start-up per call and
    # no oversubscription when several frames run in parallel.
    outer = np.stack([nx * nx, nx * ny, nx * nz, ny * ny, ny * nz, nz * nz])
    y_dir = np.asarray(y0, dtype=np.float64)
    for thresh, iters in zip(thresholds_deg, iterations):
        cos_t = np.cos(np.deg2rad(thresh))
        sin_t = np.sin(np.deg2rad(thresh))
        for _ in range(iters):
            sim = np.abs((nx * y_dir[0] + ny * y_dir[1]) + nz * y_dir[2])
            weight = (sim < sin_t).astype(np.float64) - (sim > cos_t)
            xx, xy, xz, yy, yz, zz = np.einsum("kn,n->k", outer, weight)
            a = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
            _, vecs = np.linalg.eigh(a)        # ascending eigenvalues, like MATLAB's eig here
            new = vecs[:, 0]
            y_dir = new * np.sign(y_dir @ new)
    return y_dir


def rotation_between(yi: np.ndarray, yf: np.ndarray) -> np.ndarray:
    """getRMatrix(yi, yf): the 3x3 rotation taking axis yi to axis yf about yi x yf.

    The angle is acos(|yi . yf|) (note the absolute value, as in rgbdutils); below 0.1 degree the
    identity is returned. Works on flat 3-vectors (the Python port's column-vector version fails
    on numpy >= 1.24).
    """
    yi = np.asarray(yi, dtype=np.float64).reshape(3)
    yf = np.asarray(yf, dtype=np.float64).reshape(3)
    with np.errstate(invalid="ignore", divide="ignore"):
        yi = yi / np.linalg.norm(yi)
        yf = yf / np.linalg.norm(yf)
        ax = np.cross(yi, yf)
        ax = ax / np.linalg.norm(ax)
        phi = np.degrees(np.arccos(np.abs(yi @ yf)))
    if not abs(phi) > 0.1:                  # NaN also gives the identity, as in MATLAB
        return np.eye(3)
    phi = phi * (np.pi / 180.0)
    s_hat = np.array([[0.0, -ax[2], ax[1]],
                      [ax[2], 0.0, -ax[0]],
                      [-ax[1], ax[0], 0.0]])
    return np.eye(3) + np.sin(phi) * s_hat + (1.0 - np.cos(phi)) * (s_hat @ s_hat)


def _checked_inputs(depth_m, camera, missing, frame):
    """Validate and convert to float64 depth, float64 3x3 camera and bool mask, or raise ValueError."""
    where = f"HHA input {frame!r}" if frame is not None else "HHA input"

    def fail(msg: str) -> ValueError:
        return ValueError(f"{where}: {msg}")

    if not isinstance(depth_m, np.ndarray):
        raise fail(f"depth must be a numpy array, got {type(depth_m).__name__}")
    if depth_m.ndim != 2 or depth_m.shape[0] < 1 or depth_m.shape[1] < 1:
        raise fail(f"depth must be a 2-D H x W array, got shape {depth_m.shape}")
    if not np.issubdtype(depth_m.dtype, np.floating):
        raise fail(f"depth must be floating-point metres, got dtype {depth_m.dtype} "
                   "(divide integer depth PNGs by their scale, e.g. 1000 for millimetres)")
    depth = np.ascontiguousarray(depth_m, dtype=np.float64) + 0.0   # + 0.0 turns -0.0 into 0.0
    finite = np.isfinite(depth)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise fail(f"depth has {int((~finite).sum())} non-finite values "
                   f"(first at row {bad[0]}, column {bad[1]})")
    if (depth < 0).any():
        raise fail(f"depth has {int((depth < 0).sum())} negative values (minimum {depth.min()} m)")

    try:
        cam = np.asarray(camera, dtype=np.float64)
    except (TypeError, ValueError):
        cam = np.full(1, np.nan)
    if cam.shape != (3, 3) or not np.isfinite(cam).all() or cam[0, 0] == 0 or cam[1, 1] == 0:
        raise fail(f"camera must be a finite 3x3 matrix with nonzero fx, fy, got {camera!r}")

    if missing is None:
        mask = depth == 0
    else:
        if not isinstance(missing, np.ndarray) or missing.dtype != np.bool_:
            raise fail("missing must be a bool numpy array (True where the raw depth is 0), "
                       f"got {getattr(missing, 'dtype', type(missing).__name__)}")
        if missing.shape != depth.shape:
            raise fail(f"missing has shape {missing.shape}, depth has shape {depth.shape}")
        mask = np.ascontiguousarray(missing)
    if not (~mask & (depth > 0)).any():
        raise fail("no valid depth (every pixel is missing or zero)")
    return depth, cam, mask
