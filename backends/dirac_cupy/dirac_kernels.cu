// Fused CUDA kernels of the CuPy backend: the Dirac weight and NCReLU, forward and VJP.
//
// Loaded at run time by dirac_cupy.kernels through cupy.RawModule (NVRTC), one template
// instantiation per dtype: T is the storage type (double, float, __half) and A the type
// arithmetic and sums run in (double for double, float otherwise: half accumulates in float,
// as the specification requires). The same maths, written with array operations, is
// dirac_cupy.fused_math; CI checks that one against the reference on the CPU and compiles
// this file with nvcc.
//
// Dirac weight, one block per output filter o (a row of L = I/groups * prod(K) entries):
//   m  = max_j |w_j|                   scale, so that squaring cannot overflow or underflow
//   sn = sqrt(sum_j (w_j / m)^2)       the norm of the scaled filter; ||w|| = m * sn
//   u_j = (w_j / m) / sn               when m * sn >= eps, else u_j = w_j / eps (the clamp)
//   out_j = alpha_o * delta_oj + beta_o * u_j       (u_j = w_j when normalize is off)
// delta_oj is 1 at the kernel centre where the in-group output index o' = o % No matches
// the input channel i: o' % n == i % n with n = min(No, Ni) ("tile"), or o' == i ("min").

#include <cuda_fp16.h>

#define DIRAC_BLOCK 256  // threads per block; a power of two for the tree reductions

__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }

__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }

// Tree reduction over the block; every thread gets the result. buf holds DIRAC_BLOCK slots.
template <typename A, bool TakeMax>
__device__ A block_reduce(A v, A* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = DIRAC_BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            const A other = buf[threadIdx.x + s];
            const A mine = buf[threadIdx.x];
            buf[threadIdx.x] = TakeMax ? (other > mine ? other : mine) : mine + other;
        }
        __syncthreads();
    }
    const A result = buf[0];
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

// max |w_j| and sum (w_j / m)^2 over one filter.
template <typename T, typename A>
__device__ void filter_scale(const T* row, long long length, A* buf, A& m, A& sn) {
    A local = 0;
    for (long long j = threadIdx.x; j < length; j += DIRAC_BLOCK) {
        const A v = to_acc(row[j]);
        const A a = v < 0 ? -v : v;
        local = a > local ? a : local;
    }
    m = block_reduce<A, true>(local, buf);
    A squares = 0;
    if (m > 0) {
        for (long long j = threadIdx.x; j < length; j += DIRAC_BLOCK) {
            const A v = to_acc(row[j]) / m;
            squares += v * v;
        }
    }
    sn = sqrt(block_reduce<A, false>(squares, buf));
}

// alpha and beta are read as scale[o * step]: step 0 for a scalar, 1 for one per channel.
template <typename T, typename A>
__global__ void __launch_bounds__(DIRAC_BLOCK) dirac_weight_forward(
    const T* w, const A* alpha, long long alpha_step, const A* beta, long long beta_step,
    T* out, long long length, DIRAC_GEOMETRY, A eps, int normalize) {
    __shared__ A buf[DIRAC_BLOCK];
    const long long o = blockIdx.x;
    const T* row = w + o * length;
    T* dst = out + o * length;
    const A a = alpha[o * alpha_step];
    const A b = beta[o * beta_step];
    A m = 1, sn = 1;
    bool clamped = false;
    if (normalize) {
        filter_scale<T, A>(row, length, buf, m, sn);
        clamped = m * sn < eps;
    }
    for (long long j = threadIdx.x; j < length; j += DIRAC_BLOCK) {
        const A v = to_acc(row[j]);
        A direction = v;
        if (normalize) direction = clamped ? v / eps : (v / m) / sn;
        const A d = is_delta(o, j, DIRAC_GEOMETRY_ARGS) ? a : A(0);
        store(dst + j, d + b * direction);
    }
}

// VJP of the Dirac weight for one filter. Writes dw and the filter's parts of dalpha and
// dbeta (sum_j g_j delta_oj and sum_j g_j u_j); the host sums them for scalar scales.
//   above the clamp: dw_j = (b g_j - u_j * b <u, g>) / sn / m,  <u, g> = sum_j g_j u_j
//   below it:        dw_j = b g_j / eps
template <typename T, typename A>
__global__ void __launch_bounds__(DIRAC_BLOCK) dirac_weight_backward(
    const T* g, const T* w, const A* beta, long long beta_step, T* dw, A* dalpha_part,
    A* dbeta_part, long long length, DIRAC_GEOMETRY, A eps, int normalize) {
    __shared__ A buf[DIRAC_BLOCK];
    const long long o = blockIdx.x;
    const T* row = w + o * length;
    const T* grow = g + o * length;
    T* dst = dw + o * length;
    const A b = beta[o * beta_step];
    A m = 1, sn = 1;
    bool clamped = false;
    if (normalize) {
        filter_scale<T, A>(row, length, buf, m, sn);
        clamped = m * sn < eps;
    }
    // <g, w / m> and <g, delta>; with normalize off m is 1, so the first is <g, w>.
    A gw = 0, gd = 0;
    for (long long j = threadIdx.x; j < length; j += DIRAC_BLOCK) {
        const A gj = to_acc(grow[j]);
        if (m > 0) gw += gj * (to_acc(row[j]) / m);
        if (is_delta(o, j, DIRAC_GEOMETRY_ARGS)) gd += gj;
    }
    gw = block_reduce<A, false>(gw, buf);
    gd = block_reduce<A, false>(gd, buf);
    A gu = gw;                               // <g, u>
    if (normalize) gu = clamped ? m * gw / eps : gw / sn;
    if (threadIdx.x == 0) {
        dalpha_part[o] = gd;
        dbeta_part[o] = gu;
    }
    const A bgu = b * gu;
    for (long long j = threadIdx.x; j < length; j += DIRAC_BLOCK) {
        const A bg = b * to_acc(grow[j]);
        A value = bg;
        if (normalize) {
            value = clamped ? bg / eps : (bg - ((to_acc(row[j]) / m) / sn) * bgu) / sn / m;
        }
        store(dst + j, value);
    }
}

// NCReLU over x viewed as (outer, C, inner): y is (outer, 2C, inner). Entry j of x lands at
// j + p * C * inner (positive half) and C * inner further (negative half), p = j / (C*inner).
// NaN passes into both halves, as max/min do.
template <typename T>
__global__ void ncrelu_forward(const T* x, T* y, long long total, long long block) {
    const long long step = (long long)gridDim.x * blockDim.x;
    for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < total; j += step) {
        const T v = x[j];
        const auto a = to_acc(v);
        T zero;
        store(&zero, 0.0f);
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
        const auto a = to_acc(x[j]);
        const long long pos = j + (j / block) * block;
        T value;
        store(&value, 0.0f);
        if (a > 0) value = g[pos];
        if (a < 0) value = g[pos + block];
        dx[j] = value;
    }
}
