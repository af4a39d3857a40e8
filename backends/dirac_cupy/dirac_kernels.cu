// Fused CUDA kernels of the CuPy backend: the Dirac weight and NCReLU, forward and VJP.
//
// Loaded at run time by dirac_cupy.kernels through cupy.RawModule (NVRTC), one template
// instantiation per storage type T (double, float, __half). The same maths, written with array
// operations, is dirac_cupy.fused_math; CI runs that one through the conformance suite on the
// CPU and compiles this file with nvcc.
//
// Flush-to-zero. CuPy compiles every kernel with -ftz=true, appended after the caller's
// options, so float32 operations here would read subnormal operands as zero and flush
// subnormal results to zero: in comparisons, divisions, and in the float <-> double
// conversions themselves (cvt.ftz). Double precision is never flushed. So every value is
// computed in double, whatever T is: floats are widened and narrowed through their bits
// (to_acc, store), halves through float (every half is a normal float), and the scales come in
// their own dtype rather than through one of CuPy's (flushing) conversion kernels.
//
// No fused multiply-adds. dirac_cupy.kernels compiles with -fmad=false, so every a * b + c
// is rounded twice, as dirac_cupy.fused_math (the CPU mirror) computes it; with the sums in
// block_reduce's order, mirrored there too, the mirror's double results are these kernels'
// results bit for bit (double +, *, / and sqrt are correctly rounded on the GPU).
//
// Dirac weight, one block per output filter o (a row of L = I/groups * prod(K) entries; a
// long filter among few may be cut into parts, one block each, see "Few long filters"):
//   m  = max_j |w_j|                   scale, so that squaring cannot overflow or underflow
//   sn = sqrt(sum_j (w_j / m)^2)       the norm of the scaled filter; ||w|| = m * sn
//   u_j = (w_j / m) / sn               unless m < eps and m * sn < eps: then u_j = w_j / eps
//   out_j = alpha_o * delta_oj + beta_o * u_j       (u_j = w_j when normalize is off)
// eps arrives already in the working dtype's positive finite range (dirac_core.normalize).
// delta_oj is 1 at the kernel centre where the in-group output index o' = o % No matches
// the input channel i: o' % n == i % n with n = min(No, Ni) ("tile"), or o' == i ("min").

#include <cuda_fp16.h>

#define DIRAC_BLOCK 256  // threads per block; a power of two for the tree reductions

__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ double to_acc(__half v) { return (double)__half2float(v); }
__device__ __forceinline__ double to_acc(float v) {
    const unsigned bits = __float_as_uint(v);
    if (bits & 0x7f800000u) return (double)v;  // normal, inf or NaN: converts exactly
    const double magnitude = (double)(bits & 0x007fffffu) * 1.401298464324817e-45;  // * 2^-149
    return (bits >> 31) ? -magnitude : magnitude;
}

__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(__half* p, double v) { *p = __double2half(v); }
__device__ __forceinline__ void store(float* p, double v) {
    const double a = fabs(v);
    if (!(a < 1.1754943508222875e-38)) {  // at least 2^-126 (or inf, NaN): a normal float
        *p = (float)v;
        return;
    }
    // a * 2^149 is exact and at most 2^23; the conversion rounds half to even, as IEEE does.
    const unsigned mantissa = __double2uint_rn(a * 7.1362384635297994e+44);
    const unsigned sign = __double_as_longlong(v) < 0 ? 0x80000000u : 0u;  // -0.0 included
    *p = __uint_as_float(sign | mantissa);
}

// The scales alpha and beta in their own dtype: kind 0 double, 1 float, 2 half.
__device__ __forceinline__ double scale_at(const void* scale, int kind, long long index) {
    if (kind == 1) return to_acc(static_cast<const float*>(scale)[index]);
    if (kind == 2) return to_acc(static_cast<const __half*>(scale)[index]);
    return static_cast<const double*>(scale)[index];
}

// The larger of a and b, NaN if either is: a NaN entry must reach its filter's scale, so that
// the whole filter comes out NaN (docs/spec.md); fmax and a plain "a > b" would drop it.
__device__ __forceinline__ double nan_max(double a, double b) {
    return (a > b || a != a) ? a : b;
}

// Tree reduction over the block; every thread gets the result. buf holds DIRAC_BLOCK slots.
template <bool TakeMax>
__device__ double block_reduce(double v, double* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = DIRAC_BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            const double other = buf[threadIdx.x + s];
            const double mine = buf[threadIdx.x];
            buf[threadIdx.x] = TakeMax ? nan_max(other, mine) : mine + other;
        }
        __syncthreads();
    }
    const double result = buf[0];
    __syncthreads();  // buf is reused by the next reduction
    return result;
}

// Where the Dirac tensor has its ones. The geometry travels as plain scalars (kernel
// arguments from CuPy): spatial = prod(K) entries per (filter, input channel), centre = flat
// index of the kernel centre within them, per_group = No = O / groups, n = min(No, Ni),
// policy_min = 1 for ones only at o' == i, 0 for the tiled pattern.
#define DIRAC_GEOMETRY long long spatial, long long centre, long long per_group, long long n, \
    int policy_min
#define DIRAC_GEOMETRY_ARGS spatial, centre, per_group, n, policy_min

__device__ __forceinline__ bool is_delta(long long o, long long j, DIRAC_GEOMETRY) {
    if (j % spatial != centre) return false;
    const long long i = j / spatial;
    const long long local = o % per_group;
    return policy_min ? local == i : (local % n) == (i % n);
}

// Few long filters. One block per filter leaves most of the GPU idle when there are few
// filters (a (1, 10^7) weight runs on one multiprocessor), so the launcher may cut each filter
// into `parts` chunks of `chunk` entries, one block per chunk: block b works on filter
// o = b / parts, entries [p * chunk, min(length, (p + 1) * chunk)) with p = b % parts. The
// per-filter reductions then take several launches (stages): each block writes its chunk's
// partial results to partial[b * PARTIALS + kind], and the next stage reduces a filter's
// partials over its parts in block_reduce's order. With parts == 1 (the usual case) a single
// launch (STAGE_ALL) does everything in the filter's block, as the reductions over one part
// would give the same values (x + 0 = x).
#define STAGE_ALL 0
#define STAGE_MAX 1      // max |w| (and max |beta g| for the VJP) per chunk
#define STAGE_SQUARES 2  // sum (w / m)^2 per chunk, m from the maxima
#define STAGE_SUMS 3     // the VJP's <g, delta>, <g, u>, <u, h> per chunk
#define STAGE_OUTPUT 4   // the output, every per-filter value from the partials
#define P_MAX 0
#define P_GMAX 1
#define P_SQUARES 2
#define P_GD 3
#define P_GU 4
#define P_UH 5
#define PARTIALS 6

// The block's filter and chunk.
struct Chunk {
    long long o, lo, hi;
    __device__ Chunk(long long length, long long chunk, long long parts) {
        o = blockIdx.x / parts;
        lo = (blockIdx.x % parts) * chunk;
        hi = lo + chunk < length ? lo + chunk : length;
    }
};

// One kind of a filter's partial results, reduced over its parts in block_reduce's order.
template <bool TakeMax>
__device__ double over_parts(const double* partial, long long o, long long parts, int kind,
                             double* buf) {
    double local = 0;
    for (long long p = threadIdx.x; p < parts; p += DIRAC_BLOCK) {
        const double v = partial[(o * parts + p) * PARTIALS + kind];
        local = TakeMax ? nan_max(v, local) : local + v;
    }
    return block_reduce<TakeMax>(local, buf);
}

// max_j |scale * x_j| over entries [lo, hi) of one row.
template <typename T>
__device__ double chunk_max_abs(const T* row, long long lo, long long hi, double scale,
                                double* buf) {
    double local = 0;
    for (long long j = lo + threadIdx.x; j < hi; j += DIRAC_BLOCK) {
        local = nan_max(fabs(scale * to_acc(row[j])), local);
    }
    return block_reduce<true>(local, buf);
}

// sum_j (x_j / m)^2 over entries [lo, hi) of one row (0 for m = 0: an all-zero filter).
template <typename T>
__device__ double chunk_squares(const T* row, long long lo, long long hi, double m,
                                double* buf) {
    double squares = 0;
    if (m > 0) {
        for (long long j = lo + threadIdx.x; j < hi; j += DIRAC_BLOCK) {
            const double v = to_acc(row[j]) / m;
            squares += v * v;
        }
    }
    return block_reduce<false>(squares, buf);
}

// The normalization of one filter: its scale m, the norm sn of w / m, and the clamp.
struct FilterNorm {
    double m, sn, eps;
    bool clamped;
    __device__ double direction(double v) const { return clamped ? v / eps : (v / m) / sn; }
};

__device__ FilterNorm make_norm(double m, double squares, double eps) {
    FilterNorm f;
    f.eps = eps;
    f.m = m;
    f.sn = sqrt(squares);
    // ||w|| >= m, so only a filter with m < eps can be below the clamp; an all-zero one is.
    f.clamped = f.m < eps && f.m * f.sn < eps;
    return f;
}

// The filter's normalization at this stage: computed from the chunk (STAGE_ALL: the chunk is
// the row) or from the partials of the earlier stages. Returns false once the block has
// written its partial result of STAGE_MAX or STAGE_SQUARES: nothing more to do then.
template <typename T>
__device__ bool filter_norm(const T* row, const Chunk& c, long long parts, double* partial,
                            int stage, double eps, double* buf, FilterNorm* f) {
    double* mine = partial + (long long)blockIdx.x * PARTIALS;
    if (stage == STAGE_MAX) {
        const double m = chunk_max_abs<T>(row, c.lo, c.hi, 1.0, buf);
        if (threadIdx.x == 0) mine[P_MAX] = m;
        return false;
    }
    const double m = stage == STAGE_ALL ? chunk_max_abs<T>(row, c.lo, c.hi, 1.0, buf)
                                        : over_parts<true>(partial, c.o, parts, P_MAX, buf);
    if (stage == STAGE_SQUARES) {
        const double squares = chunk_squares<T>(row, c.lo, c.hi, m, buf);
        if (threadIdx.x == 0) mine[P_SQUARES] = squares;
        return false;
    }
    *f = make_norm(m, stage == STAGE_ALL ? chunk_squares<T>(row, c.lo, c.hi, m, buf)
                                          : over_parts<false>(partial, c.o, parts, P_SQUARES,
                                                              buf), eps);
    return true;
}

// alpha and beta are read as scale[o * step]: step 0 for a scalar, 1 for one per channel.
// Stages: STAGE_ALL (parts == 1), or STAGE_MAX, STAGE_SQUARES, STAGE_OUTPUT (only the last
// without normalization).
template <typename T>
__global__ void __launch_bounds__(DIRAC_BLOCK) dirac_weight_forward(
    const T* w, const void* alpha, int alpha_kind, long long alpha_step, const void* beta,
    int beta_kind, long long beta_step, T* out, long long length, long long chunk,
    long long parts, double* partial, int stage, DIRAC_GEOMETRY, double eps, int normalize) {
    __shared__ double buf[DIRAC_BLOCK];
    const Chunk c(length, chunk, parts);
    const long long o = c.o;
    const T* row = w + o * length;
    T* dst = out + o * length;
    const double a = scale_at(alpha, alpha_kind, o * alpha_step);
    const double b = scale_at(beta, beta_kind, o * beta_step);
    FilterNorm f{1, 1, eps, false};
    if (normalize && !filter_norm<T>(row, c, parts, partial, stage, eps, buf, &f)) return;
    for (long long j = c.lo + threadIdx.x; j < c.hi; j += DIRAC_BLOCK) {
        const double v = to_acc(row[j]);
        const double u = normalize ? f.direction(v) : v;
        // alpha is added at the taps only: elsewhere the entry is b * u itself, its sign of
        // zero included (0.0 + -0.0 would be +0.0).
        const double t = b * u;
        store(dst + j, is_delta(o, j, DIRAC_GEOMETRY_ARGS) ? a + t : t);
    }
}

// VJP of the Dirac weight for one filter. Writes dw and the filter's parts of dalpha and
// dbeta (sum_j g_j delta_oj and sum_j g_j u_j); a kernel of ours sums them for scalar scales.
// With h = beta_o g scaled by its max-abs G (so that no sum overflows; as the reference does):
//   above the clamp: dw_j = (h_j - u_j <u, h>) / sn * (G / m)   (0 where that tangent is 0)
//   below it:        dw_j = beta_o g_j / eps
// Stages: STAGE_ALL (parts == 1), or STAGE_MAX, STAGE_SQUARES, STAGE_SUMS, STAGE_OUTPUT (only
// the last two without normalization).
template <typename T>
__global__ void __launch_bounds__(DIRAC_BLOCK) dirac_weight_backward(
    const T* g, const T* w, const void* beta, int beta_kind, long long beta_step, T* dw,
    double* dalpha_part, double* dbeta_part, long long length, long long chunk, long long parts,
    double* partial, int stage, DIRAC_GEOMETRY, double eps, int normalize) {
    __shared__ double buf[DIRAC_BLOCK];
    const Chunk c(length, chunk, parts);
    const long long o = c.o;
    const T* row = w + o * length;
    const T* grow = g + o * length;
    T* dst = dw + o * length;
    double* mine = partial + (long long)blockIdx.x * PARTIALS;
    const double b = scale_at(beta, beta_kind, o * beta_step);
    FilterNorm f{1, 1, eps, false};
    double big = 1;  // G = max_j |b g_j|
    if (normalize) {
        if (stage == STAGE_MAX) {
            const double gmax = chunk_max_abs<T>(grow, c.lo, c.hi, b, buf);
            if (threadIdx.x == 0) mine[P_GMAX] = gmax;
        }
        if (!filter_norm<T>(row, c, parts, partial, stage, eps, buf, &f)) return;
        big = stage == STAGE_ALL ? chunk_max_abs<T>(grow, c.lo, c.hi, b, buf)
                                 : over_parts<true>(partial, o, parts, P_GMAX, buf);
    }
    const double unit_g = big > 0 ? big : 1.0;
    // <g, delta>, <g, u> and <u, h>; with normalize off u is w.
    double gd = 0, gu = 0, uh = 0;
    if (stage == STAGE_OUTPUT) {
        gd = over_parts<false>(partial, o, parts, P_GD, buf);
        gu = over_parts<false>(partial, o, parts, P_GU, buf);
        uh = over_parts<false>(partial, o, parts, P_UH, buf);
    } else {
        for (long long j = c.lo + threadIdx.x; j < c.hi; j += DIRAC_BLOCK) {
            const double gj = to_acc(grow[j]);
            const double v = to_acc(row[j]);
            const double u = normalize ? f.direction(v) : v;
            if (is_delta(o, j, DIRAC_GEOMETRY_ARGS)) gd += gj;
            gu += gj * u;
            uh += u * (b * gj / unit_g);
        }
        gd = block_reduce<false>(gd, buf);
        gu = block_reduce<false>(gu, buf);
        uh = block_reduce<false>(uh, buf);
        if (stage == STAGE_SUMS) {
            if (threadIdx.x == 0) {
                mine[P_GD] = gd;
                mine[P_GU] = gu;
                mine[P_UH] = uh;
            }
            return;
        }
    }
    if (threadIdx.x == 0 && c.lo == 0) {
        dalpha_part[o] = gd;
        dbeta_part[o] = gu;
    }
    const double factor = big / (f.clamped || f.m == 0 ? 1.0 : f.m);
    for (long long j = c.lo + threadIdx.x; j < c.hi; j += DIRAC_BLOCK) {
        const double bg = b * to_acc(grow[j]);
        double value = bg;
        if (normalize && f.clamped) {
            value = bg / eps;
        } else if (normalize) {
            const double tangent = bg / unit_g - f.direction(to_acc(row[j])) * uh;
            value = tangent == 0 ? 0.0 : tangent / f.sn * factor;
        }
        store(dst + j, value);
    }
}

// The scales' gradients: dst[k] = the sum of parts[k * count : (k + 1) * count], summed in
// block_reduce's order and rounded to the scale's dtype as the reference rounds, without the
// flush a CuPy conversion kernel would apply. count = O for a scalar scale (one output), 1 for
// one per channel (O outputs). One block per output (grid-stride over outputs).
template <typename T>
__global__ void __launch_bounds__(DIRAC_BLOCK) reduce_narrow(
    const double* parts, T* dst, long long total, long long count) {
    __shared__ double buf[DIRAC_BLOCK];
    for (long long k = blockIdx.x; k < total; k += gridDim.x) {  // uniform within the block
        double local = 0;
        for (long long j = threadIdx.x; j < count; j += DIRAC_BLOCK) local += parts[k * count + j];
        const double sum = block_reduce<false>(local, buf);
        if (threadIdx.x == 0) store(dst + k, sum);
    }
}

// Batch-norm folding over a weight of out_channels rows of length entries:
//   s = gamma / sqrt(var + eps),  W' = W * s,  b' = (b - mean) * s + beta   (b' = -mean * s +
//   beta without a bias). In double, like everything here: CuPy's own kernels would read a
//   subnormal float32 eps (1e-40) as 0 and give s = gamma / 0 = inf for a channel with
//   var = 0, where the specification gives 1e20 * gamma. eps arrives rounded to the working
//   dtype, as the specification takes it.
template <typename T>
__global__ void fold_batchnorm(
    const T* weight, const T* bias, int has_bias, const T* gamma, const T* beta, const T* mean,
    const T* var, T* out_weight, T* out_bias, long long out_channels, long long length,
    double eps) {
    const long long step = (long long)gridDim.x * blockDim.x;
    const long long first = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    for (long long j = first; j < out_channels * length; j += step) {
        const long long o = j / length;
        const double s = to_acc(gamma[o]) / sqrt(to_acc(var[o]) + eps);
        store(out_weight + j, to_acc(weight[j]) * s);
    }
    for (long long o = first; o < out_channels; o += step) {
        const double s = to_acc(gamma[o]) / sqrt(to_acc(var[o]) + eps);
        const double shift = has_bias ? to_acc(bias[o]) - to_acc(mean[o]) : -to_acc(mean[o]);
        store(out_bias + o, shift * s + to_acc(beta[o]));
    }
}

// NCReLU over x viewed as (outer, C, inner): y is (outer, 2C, inner). Entry j of x lands at
// j + p * C * inner (positive half) and C * inner further (negative half), p = j / (C*inner).
// The entry itself is copied (a subnormal stays one); NaN passes into both halves, as max/min
// do. The comparisons run in double, where flush-to-zero cannot turn a subnormal into 0.
template <typename T>
__global__ void ncrelu_forward(const T* x, T* y, long long total, long long block) {
    const long long step = (long long)gridDim.x * blockDim.x;
    for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < total; j += step) {
        const T v = x[j];
        const double a = to_acc(v);
        T zero;
        store(&zero, 0.0);
        const long long pos = j + (j / block) * block;
        y[pos] = a <= 0 ? zero : v;
        y[pos + block] = a >= 0 ? zero : v;
    }
}

// VJP of NCReLU: dx_j = g_pos if x_j > 0, g_neg if x_j < 0, 0 at exactly zero (and at NaN).
template <typename T>
__global__ void ncrelu_backward(const T* g, const T* x, T* dx, long long total, long long block) {
    const long long step = (long long)gridDim.x * blockDim.x;
    for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < total; j += step) {
        const double a = to_acc(x[j]);
        const long long pos = j + (j / block) * block;
        T value;
        store(&value, 0.0);
        if (a > 0) value = g[pos];
        if (a < 0) value = g[pos + block];
        dx[j] = value;
    }
}
