/* One log-density-and-gradient kernel for every exact form of bayes_lmm.
 *
 * The mathematics is documented in kernel.py (the Python side that packs the arrays and
 * compiles this file once per machine). In whitened coordinates u_b = Λ_b v_b, v ~ N(0, I),
 * β − β₀ = s ∘ w, w ~ N(m, I), with W̃ = [Z_E Λ_E, Z_r Λ_r, X diag(s)]:
 *
 *   log p(y | θ) = −½ [n log 2πσ² + log|P| + y'y/σ² + m'm − c'P⁻¹c],
 *   P = I + W̃'W̃/σ², c = W̃'y/σ² + (0, m).
 *
 * Block E (per-level k×k systems, levels with equal Z_l'Z_l summed) is eliminated first,
 * the remainder (other blocks, then β) by one dense Cholesky. Gradient by Fisher's identity:
 * ∂ℓ/∂θ = tr(J S_b) with J = Λ⁻¹∂Λ and S_b = Σ_levels (E[vv'] − I); ∂ℓ/∂log σ_e =
 * −n + E‖y − W̃b‖²/σ². Every array is C-ordered float64 or int64; see kernel.py for layout.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KERNEL_ABI 5
#define KMAX 4

int64_t bl_kernel_abi(void) { return KERNEL_ABI; }

static const double LOG_2PI = 1.8378770664093453;
static const double PI = 3.141592653589793;

/* L = chol(A) (lower, n×n, row-major); 0 where A is not positive definite. */
static int chol(const double *A, double *L, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double s = A[j * n + j];
        for (int64_t k = 0; k < j; k++) s -= L[j * n + k] * L[j * n + k];
        if (!(s > 0.0)) return 0;
        L[j * n + j] = sqrt(s);
        for (int64_t i = j + 1; i < n; i++) {
            double t = A[i * n + j];
            for (int64_t k = 0; k < j; k++) t -= L[i * n + k] * L[j * n + k];
            L[i * n + j] = t / L[j * n + j];
        }
        for (int64_t i = 0; i < j; i++) L[i * n + j] = 0.0;
    }
    return 1;
}

/* out = (LL')⁻¹ for a lower Cholesky factor L; work holds n² numbers. */
static void chol_inverse(const double *L, double *out, double *work, int64_t n) {
    double *Li = work;
    memset(Li, 0, sizeof(double) * n * n);
    for (int64_t i = 0; i < n; i++) {
        Li[i * n + i] = 1.0 / L[i * n + i];
        for (int64_t j = 0; j < i; j++) {
            double t = 0.0;
            for (int64_t k = j; k < i; k++) t -= L[i * n + k] * Li[k * n + j];
            Li[i * n + j] = t / L[i * n + i];
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double t = 0.0;
            for (int64_t k = i; k < n; k++) t += Li[k * n + i] * Li[k * n + j];
            out[i * n + j] = t;
            out[j * n + i] = t;
        }
}

/* The prior of one standard deviation on PyMC's unconstrained z (log of the standard
 * variable): log σ minus the log scale, its derivative in z, and log prior + log Jacobian
 * with its derivative. Families: 0 HalfNormal, 1 HalfStudentT(ν), 2 HalfCauchy,
 * 3 Exponential, 4 InverseGamma(α) on the variance. */
static void sd_prior(int64_t family, double shape, double z, double *ls, double *dls, double *lp, double *dlp) {
    if (family == 4) {
        *ls = 0.5 * z; *dls = 0.5;
        *lp = -lgamma(shape) - shape * z - exp(-z);
        *dlp = -shape + exp(-z);
        return;
    }
    double x = exp(z), x2 = x * x;
    *ls = z; *dls = 1.0;
    if (family == 0) {
        *lp = 0.5 * log(2.0 / PI) - 0.5 * x2 + z; *dlp = 1.0 - x2;
    } else if (family == 1) {
        double nu = shape;
        double c = lgamma(0.5 * (nu + 1.0)) - lgamma(0.5 * nu) - 0.5 * log(PI * nu) + log(2.0);
        *lp = c - 0.5 * (nu + 1.0) * log1p(x2 / nu) + z;
        *dlp = 1.0 - (nu + 1.0) * x2 / (nu + x2);
    } else if (family == 2) {
        *lp = log(2.0 / PI) - log1p(x2) + z; *dlp = 1.0 - 2.0 * x2 / (1.0 + x2);
    } else {
        *lp = -x + z; *dlp = 1.0 - x;
    }
}

/* r = 2b − 1, b ~ Beta(η, η) on the log-odds z: r, sqrt(1 − r²), dr/dz, log prior + log
 * Jacobian, its derivative. */
static void corr_prior(double eta, double z, double *r, double *c, double *drz, double *lp, double *dlp) {
    double b, log_b, log_1mb;
    if (z >= 0) {
        double e = exp(-z);
        b = 1.0 / (1.0 + e); log_b = -log1p(e); log_1mb = -z - log1p(e);
    } else {
        double e = exp(z);
        b = e / (1.0 + e); log_b = z - log1p(e); log_1mb = -log1p(e);
    }
    *r = 2.0 * b - 1.0;
    *c = 2.0 * exp(0.5 * (log_b + log_1mb)); /* sqrt(1 − r²) = 2 sqrt(b(1 − b)), exact as |r| → 1 */
    *drz = 2.0 * b * (1.0 - b);
    *lp = eta * (log_b + log_1mb) - (2.0 * lgamma(eta) - lgamma(2.0 * eta));
    *dlp = eta * (1.0 - 2.0 * b);
}

/* L_R from the canonical partial correlations z (pairs (1,0), (2,0), (2,1), … row by row; see
 * bayes_lmm/lkj.py): L_ij = z_ij sqrt(1 − Σ_{m<j} L_im²), L_ii = sqrt(Π_m (1 − z_im²)). */
static void lkj_factor(int64_t k, const double *z, double *L) {
    int64_t pos = 0;
    L[0] = 1.0;
    for (int64_t i = 1; i < k; i++) {
        double rest = 1.0;
        for (int64_t j = 0; j < i; j++, pos++) {
            L[i * KMAX + j] = z[pos] * sqrt(rest);
            rest *= (1.0 - z[pos]) * (1.0 + z[pos]);
        }
        L[i * KMAX + i] = sqrt(rest);
    }
}

/* ∂L_i·/∂z_ij (row i of L_R, length i + 1) for the row Li of L_R: entries before j do not
 * move; with rest_m = Π_{m'<m} (1 − z_im'²), L_im = z_im sqrt(rest_m) and L_ii = sqrt(rest_i). */
static void lkj_row_derivative(int64_t i, int64_t j, const double *z_all, const double *Li, double *dL) {
    const double *z = z_all + i * (i - 1) / 2; /* row i's CPCs start after rows 1 … i − 1 */
    for (int64_t m = 0; m <= i; m++) dL[m] = 0.0;
    /* d log rest_m / dz_ij = −2 z_ij / (1 − z_ij²) for every m > j */
    double rest_j = 1.0;
    for (int64_t m = 0; m < j; m++) rest_j *= (1.0 - z[m]) * (1.0 + z[m]);
    dL[j] = sqrt(rest_j);
    const double dlog = -2.0 * z[j] / ((1.0 - z[j]) * (1.0 + z[j]));
    for (int64_t m = j + 1; m <= i; m++) dL[m] = 0.5 * dlog * Li[m];
}

/* out = T'A (transpose) or TA for the block-diagonal T of the remainder columns: column group
 * j spans start[j] … start[j] + size[j] and is multiplied by the lower-triangular
 * lams[lam[j]] (KMAX×KMAX padded). A and out are nrow × ncol; rows beyond the groups copy. */
static void apply_t(const double *A, int transpose, int64_t ncg, const int64_t *lam, const int64_t *start,
                    const int64_t *size, const double *lams, double *out, int64_t nrow, int64_t ncol) {
    memcpy(out, A, sizeof(double) * nrow * ncol);
    for (int64_t j = 0; j < ncg; j++) {
        int64_t s = start[j], kk = size[j];
        const double *L = lams + lam[j] * KMAX * KMAX;
        for (int64_t a = 0; a < kk; a++)
            for (int64_t c = 0; c < ncol; c++) {
                double t = 0.0;
                if (transpose)
                    for (int64_t b = a; b < kk; b++) t += L[b * KMAX + a] * A[(s + b) * ncol + c];
                else
                    for (int64_t b = 0; b <= a; b++) t += L[a * KMAX + b] * A[(s + b) * ncol + c];
                out[(s + a) * ncol + c] = t;
            }
    }
}

/* ints: n_sd, n_corr, B, p, G, m1, ke, ncg, then sd_family[n_sd], sd_x[n_sd], corr_x[n_corr],
 * blocks[B×5] (k, levels, first σ, correlation slot or −1, first remainder column or −1 for
 * E), col_lam[ncg], col_start[ncg], col_size[ncg].
 * floats: sd_shape[n_sd], sd_log_scale[n_sd], corr_eta[n_corr], n, m[p], s[p], β₀[p],
 * counts[G×(1+ke²)] (levels, Z_l'Z_l), gram[m1×m1], grams[G×ke×ke×m1×m1].
 * Returns log p(y | θ) + log prior + log Jacobian, or −inf (also −inf when out of memory). */
double bl_lmm_evaluate(const double *x, double *grad, double *beta_out, double *chol_out, double *sigma,
                       double *corr, const int64_t *ints, const double *floats) {
    const int64_t n_sd = ints[0], n_corr = ints[1], B = ints[2], p = ints[3], G = ints[4], m1 = ints[5],
                  ke = ints[6], ncg = ints[7];
    const int64_t *sd_family = ints + 8, *sd_x = sd_family + n_sd, *corr_x = sd_x + n_sd,
                  *blocks = corr_x + n_corr, *col_lam = blocks + 5 * B, *col_start = col_lam + ncg,
                  *col_size = col_start + ncg;
    const double *sd_shape = floats, *sd_log_scale = sd_shape + n_sd, *corr_eta = sd_log_scale + n_sd,
                 *stats = corr_eta + n_corr, *counts = stats + 1 + 3 * p, *gram = counts + G * (1 + ke * ke),
                 *grams = gram + m1 * m1;
    const int64_t m = m1 - 1, kk2 = ke * ke, mm = m1 * m1;
    const double n = stats[0];
    int64_t dim = 0;
    for (int64_t j = 0; j < n_sd; j++) dim = sd_x[j] + 1 > dim ? sd_x[j] + 1 : dim;
    for (int64_t j = 0; j < n_corr; j++) dim = corr_x[j] + 1 > dim ? corr_x[j] + 1 : dim;
    for (int64_t i = 0; i < dim; i++) grad[i] = 0.0;

    /* one allocation for every temporary */
    size_t words = (size_t)(n_sd + 3 * n_corr + (B + p) * KMAX * KMAX * 2 + 2 * G * kk2 + 12 * mm + 4 * m1 + 6 * kk2 + 64);
    double *buf = calloc(words, sizeof(double));
    if (!buf) return -INFINITY;
    double *dlog_sd = buf, *dr = dlog_sd + n_sd, *cpc = dr + n_corr, *lams = cpc + n_corr + n_corr, *lrs = lams + (B + p) * KMAX * KMAX,
           *Minv = lrs + (B + p) * KMAX * KMAX, *K = Minv + G * kk2, *S_raw = K + G * kk2, *D = S_raw + mm,
           *TD = D + mm, *DT = TD + mm, *Cm = DT + mm, *C = Cm + mm, *LC = C + mm, *Cinv = LC + mm,
           *work = Cinv + mm, *TC = work + mm, *Psi = TC + mm, *Tmp = Psi + mm, *ctil = Tmp + mm,
           *w = ctil + m1, *bhat = w + m1, *alpha = bhat + m1, *M = alpha + m1, *LM = M + kk2, *Y = LM + kk2,
           *Om = Y + kk2, *ml = Om + kk2, *Mwork = ml + kk2;
    double *S = calloc((size_t)(B * KMAX * KMAX + 1), sizeof(double));
    if (!S) { free(buf); return -INFINITY; }

    double logp = 0.0;
    for (int64_t j = 0; j < n_sd; j++) {
        double ls, dls, lp, dlp;
        sd_prior(sd_family[j], sd_shape[j], x[sd_x[j]], &ls, &dls, &lp, &dlp);
        sigma[j] = exp(sd_log_scale[j] + ls);
        dlog_sd[j] = dls;
        logp += lp;
        grad[sd_x[j]] += dlp;
    }
    for (int64_t j = 0; j < n_corr; j++) {
        double r, c, drz, lp, dlp;
        corr_prior(corr_eta[j], x[corr_x[j]], &r, &c, &drz, &lp, &dlp);
        cpc[j] = r;
        dr[j] = drz;
        logp += lp;
        grad[corr_x[j]] += dlp;
    }
    const double s2 = sigma[n_sd - 1] * sigma[n_sd - 1], s4 = s2 * s2;
    int64_t e = -1;
    for (int64_t b = 0; b < B; b++) {
        const int64_t k = blocks[5 * b], sd0 = blocks[5 * b + 2], cs = blocks[5 * b + 3];
        double *lr = lrs + b * KMAX * KMAX, *lam = lams + b * KMAX * KMAX;
        for (int64_t a = 0; a < k; a++) lr[a * KMAX + a] = 1.0;
        if (cs >= 0) {
            lkj_factor(k, cpc + cs, lr);
            /* the correlations of L_R L_R', upper triangle row by row (the graph's order) */
            int64_t pos = cs;
            for (int64_t a = 0; a < k; a++)
                for (int64_t c = a + 1; c < k; c++) {
                    double t = 0.0;
                    for (int64_t d = 0; d <= a; d++) t += lr[a * KMAX + d] * lr[c * KMAX + d];
                    corr[pos++] = t;
                }
        }
        for (int64_t a = 0; a < k; a++)
            for (int64_t c = 0; c < k; c++) lam[a * KMAX + c] = sigma[sd0 + a] * lr[a * KMAX + c];
        if (blocks[5 * b + 4] < 0) e = b;
    }
    for (int64_t j = 0; j < p; j++) lams[(B + j) * KMAX * KMAX] = stats[1 + p + j];
    const double *le = lams + (e >= 0 ? e : 0) * KMAX * KMAX;

    /* eliminate E group by group: M_g = I + K_g, Q_g = Λ_E M_g⁻¹ Λ_E'/σ⁴, S_raw = Σ Q_ab grams_ab */
    double logdet = 0.0;
    int ok = 1;
    for (int64_t g = 0; g < G && ok; g++) {
        const double *cnt = counts + g * (1 + kk2);
        double *Kg = K + g * kk2, *Mi = Minv + g * kk2;
        for (int64_t a = 0; a < ke; a++)
            for (int64_t b = 0; b < ke; b++) {
                double t = 0.0;
                for (int64_t c = 0; c < ke; c++)
                    for (int64_t d = 0; d < ke; d++) t += le[c * KMAX + a] * cnt[1 + c * ke + d] * le[d * KMAX + b];
                Kg[a * ke + b] = t / s2;
                M[a * ke + b] = t / s2 + (a == b ? 1.0 : 0.0);
            }
        if (!chol(M, LM, ke)) { ok = 0; break; }
        for (int64_t a = 0; a < ke; a++) logdet += 2.0 * cnt[0] * log(LM[a * ke + a]);
        chol_inverse(LM, Mi, Mwork, ke);
        for (int64_t a = 0; a < ke; a++)
            for (int64_t b = 0; b < ke; b++) {
                double q = 0.0;
                for (int64_t c = 0; c < ke; c++)
                    for (int64_t d = 0; d < ke; d++) q += le[a * KMAX + c] * Mi[c * ke + d] * le[b * KMAX + d];
                q /= s4;
                if (q != 0.0) {
                    const double *gm = grams + ((g * ke + a) * ke + b) * mm;
                    for (int64_t i = 0; i < mm; i++) S_raw[i] += q * gm[i];
                }
            }
    }
    /* the remainder: C = I + T'(gram/σ² − S)T, c̃ = T'(gram_y/σ² − S_y) + m */
    if (ok) {
        for (int64_t i = 0; i < mm; i++) D[i] = gram[i] / s2 - S_raw[i];
        apply_t(D, 1, ncg, col_lam, col_start, col_size, lams, TD, m1, m1);   /* T'D (row m untouched) */
        for (int64_t i = 0; i < m1; i++)
            for (int64_t j = 0; j < m1; j++) Tmp[j * m1 + i] = TD[i * m1 + j];
        apply_t(Tmp, 1, ncg, col_lam, col_start, col_size, lams, DT, m1, m1);  /* (T'DT)' */
        for (int64_t i = 0; i < m; i++) {
            for (int64_t j = 0; j < m; j++) {
                Cm[i * m + j] = DT[j * m1 + i];
                C[i * m + j] = DT[j * m1 + i] + (i == j ? 1.0 : 0.0);
            }
            ctil[i] = TD[i * m1 + m];
        }
        for (int64_t j = 0; j < p; j++) ctil[m - p + j] += stats[1 + j];
        ok = chol(C, LC, m);
    }
    if (!ok) { free(buf); free(S); return -INFINITY; }
    double quad = D[m * m1 + m];
    for (int64_t i = 0; i < m; i++) {
        double t = ctil[i];
        for (int64_t j = 0; j < i; j++) t -= LC[i * m + j] * w[j];
        w[i] = t / LC[i * m + i];
        logdet += 2.0 * log(LC[i * m + i]);
        quad -= w[i] * w[i];
    }
    for (int64_t i = m - 1; i >= 0; i--) {
        double t = w[i];
        for (int64_t j = i + 1; j < m; j++) t -= LC[j * m + i] * bhat[j];
        bhat[i] = t / LC[i * m + i];
    }
    for (int64_t j = 0; j < p; j++) quad += stats[1 + j] * stats[1 + j];
    logp += -0.5 * (n * (LOG_2PI + log(s2)) + logdet + quad);
    for (int64_t j = 0; j < p; j++) {
        beta_out[j] = bhat[m - p + j];
        for (int64_t i = 0; i < p; i++) chol_out[j * p + i] = LC[(m - p + j) * m + m - p + i];
    }

    /* gradient: S_b = Σ_levels (E[vv'] − I) per block, E‖r‖², tr(Cov − I) */
    chol_inverse(LC, Cinv, work, m);
    double trace_minus_i = 0.0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++) trace_minus_i -= Cinv[i * m + j] * Cm[j * m + i];
    for (int64_t b = 0; b < B; b++) {
        const int64_t start = blocks[5 * b + 4], k = blocks[5 * b];
        if (start < 0) continue;
        for (int64_t lev = 0; lev < blocks[5 * b + 1]; lev++) {
            const int64_t s0 = start + lev * k;
            for (int64_t a = 0; a < k; a++)
                for (int64_t c = 0; c < k; c++) {
                    double t = bhat[s0 + a] * bhat[s0 + c];
                    for (int64_t j = 0; j < m; j++) t -= Cinv[(s0 + a) * m + j] * Cm[j * m + s0 + c];
                    S[(b * KMAX + a) * KMAX + c] += t;
                }
        }
    }
    /* α: [Z_r X y]-coordinates of y − W̃_r b̂, from the raw remainder coefficients T b̂ */
    for (int64_t i = 0; i < m1; i++) Tmp[i] = i < m ? bhat[i] : 0.0;
    apply_t(Tmp, 0, ncg, col_lam, col_start, col_size, lams, work, m1, 1);
    for (int64_t i = 0; i < m; i++) alpha[i] = -work[i];
    alpha[m] = 1.0;
    double r2 = 0.0;
    for (int64_t i = 0; i < m1; i++) {
        double t = 0.0;
        for (int64_t j = 0; j < m1; j++) t += (gram[i * m1 + j] - 2.0 * s2 * S_raw[i * m1 + j]) * alpha[j];
        r2 += alpha[i] * t;
    }
    if (G > 0) {
        /* Ψ = T C⁻¹ T' in raw remainder coordinates = T (T C⁻¹)' */
        memset(Tmp, 0, sizeof(double) * mm);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < m; j++) Tmp[i * m1 + j] = Cinv[i * m + j];
        apply_t(Tmp, 0, ncg, col_lam, col_start, col_size, lams, TC, m1, m1);
        for (int64_t i = 0; i < m1; i++)
            for (int64_t j = 0; j < m1; j++) Tmp[j * m1 + i] = TC[i * m1 + j];
        apply_t(Tmp, 0, ncg, col_lam, col_start, col_size, lams, Psi, m1, m1);
        for (int64_t g = 0; g < G; g++) {
            const double *cnt = counts + g * (1 + kk2), *Mi = Minv + g * kk2, *Kg = K + g * kk2;
            for (int64_t a = 0; a < ke; a++)
                for (int64_t b = 0; b < ke; b++) {
                    const double *gm = grams + ((g * ke + a) * ke + b) * mm;
                    double y_ab = 0.0, o_ab = 0.0;
                    for (int64_t i = 0; i < m1; i++) {
                        double t = 0.0, u = 0.0;
                        for (int64_t j = 0; j < m1; j++) {
                            t += gm[i * m1 + j] * alpha[j];
                            if (i < m && j < m) u += Psi[i * m1 + j] * gm[i * m1 + j];
                        }
                        o_ab += alpha[i] * t;
                        y_ab += u;
                    }
                    Y[a * ke + b] = y_ab;
                    Om[a * ke + b] = o_ab;
                }
            /* ml = M⁻¹Λ_E'; covariance and mean parts of Σ_l E[v_l v_l'] are ml (Y, Ω) ml'/σ⁴ */
            for (int64_t a = 0; a < ke; a++)
                for (int64_t c = 0; c < ke; c++) {
                    double t = 0.0;
                    for (int64_t d = 0; d < ke; d++) t += Mi[a * ke + d] * le[c * KMAX + d];
                    ml[a * ke + c] = t;
                }
            for (int64_t a = 0; a < ke; a++)
                for (int64_t c = 0; c < ke; c++) {
                    double cov = 0.0, mean = 0.0, prior = 0.0;
                    for (int64_t i = 0; i < ke; i++)
                        for (int64_t j = 0; j < ke; j++) {
                            cov += ml[a * ke + i] * Y[i * ke + j] * ml[c * ke + j];
                            mean += ml[a * ke + i] * Om[i * ke + j] * ml[c * ke + j];
                        }
                    for (int64_t d = 0; d < ke; d++) prior -= Mi[a * ke + d] * Kg[d * ke + c];
                    S[(e * KMAX + a) * KMAX + c] += cnt[0] * prior + (cov + mean) / s4;
                    r2 += Kg[c * ke + a] * mean / s2;
                    if (a == c) trace_minus_i += cnt[0] * prior + cov / s4;
                }
        }
    }
    /* chain rule to the unconstrained coordinates */
    grad[sd_x[n_sd - 1]] += dlog_sd[n_sd - 1] * (-n + r2 / s2 - trace_minus_i);
    for (int64_t b = 0; b < B; b++) {
        const int64_t k = blocks[5 * b], sd0 = blocks[5 * b + 2], cs = blocks[5 * b + 3];
        const double *Sb = S + b * KMAX * KMAX;
        if (cs < 0) {
            for (int64_t a = 0; a < k; a++) grad[sd_x[sd0 + a]] += dlog_sd[sd0 + a] * Sb[a * KMAX + a];
            continue;
        }
        /* Λ = diag(σ) L_R, J = Λ⁻¹∂Λ, ∂ℓ = tr(J S): ∂/∂log σ_a = (L_R S L_R⁻¹)_aa and, for a
         * CPC z_ij (it moves row i of L_R only), ∂/∂z_ij = Σ_b ∂L_ib (S L_R⁻¹)_bi */
        const double *lr = lrs + b * KMAX * KMAX;
        double li[KMAX * KMAX] = {0}, W[KMAX * KMAX] = {0}, dL[KMAX];
        for (int64_t c = 0; c < k; c++) /* L_R⁻¹ by forward substitution, column c */
            for (int64_t a = c; a < k; a++) {
                double t = a == c ? 1.0 : 0.0;
                for (int64_t d = c; d < a; d++) t -= lr[a * KMAX + d] * li[d * KMAX + c];
                li[a * KMAX + c] = t / lr[a * KMAX + a];
            }
        for (int64_t a = 0; a < k; a++)
            for (int64_t c = 0; c < k; c++) {
                double t = 0.0;
                for (int64_t d = c; d < k; d++) t += Sb[a * KMAX + d] * li[d * KMAX + c];
                W[a * KMAX + c] = t;
            }
        for (int64_t a = 0; a < k; a++) {
            double t = 0.0;
            for (int64_t d = 0; d <= a; d++) t += lr[a * KMAX + d] * W[d * KMAX + a];
            grad[sd_x[sd0 + a]] += dlog_sd[sd0 + a] * t;
        }
        int64_t pos = cs;
        for (int64_t i = 1; i < k; i++)
            for (int64_t j = 0; j < i; j++, pos++) {
                lkj_row_derivative(i, j, cpc + cs, lr + i * KMAX, dL);
                double t = 0.0;
                for (int64_t d = 0; d <= i; d++) t += dL[d] * W[d * KMAX + i];
                grad[corr_x[pos]] += dr[pos] * t;
            }
    }
    free(buf);
    free(S);
    return logp;
}

/* nutpie's callback interface (the numba callbacks of nutpie.compile_pymc have this form):
 * user_data holds two addresses, of the ints and of the floats above. */
static int64_t n_dim(const int64_t *ints) {
    const int64_t n_sd = ints[0], n_corr = ints[1], *sd_x = ints + 8 + n_sd, *corr_x = sd_x + n_sd;
    int64_t dim = 0;
    for (int64_t j = 0; j < n_sd; j++) dim = sd_x[j] + 1 > dim ? sd_x[j] + 1 : dim;
    for (int64_t j = 0; j < n_corr; j++) dim = corr_x[j] + 1 > dim ? corr_x[j] + 1 : dim;
    return dim;
}

int64_t bl_kernel_n_expanded(const int64_t *ints) { return ints[0] + ints[3] + ints[3] * ints[3] + ints[1]; }

static int64_t scratch_evaluate(const double *x, double *grad, double *logp, double *expanded,
                                const uint64_t *user_data) {
    const int64_t *ints = (const int64_t *)(uintptr_t)user_data[0];
    const double *floats = (const double *)(uintptr_t)user_data[1];
    const int64_t n_sd = ints[0], n_corr = ints[1], p = ints[3];
    double *own = NULL;
    if (!expanded) {
        own = calloc((size_t)(bl_kernel_n_expanded(ints) + 1), sizeof(double));
        if (!own) return 1;
        expanded = own;
    }
    /* expanded: σ (n_sd), E[β | y, θ] (p), chol (p×p), correlations (n_corr) */
    double *sigma = expanded, *beta = sigma + n_sd, *chol = beta + p, *corr = chol + p * p;
    double value = bl_lmm_evaluate(x, grad, beta, chol, sigma, corr, ints, floats);
    *logp = value;
    if (isfinite(value)) {
        const double *stats = floats + 2 * n_sd + n_corr;
        for (int64_t j = 0; j < p; j++) beta[j] = stats[1 + 2 * p + j] + stats[1 + p + j] * beta[j];
    }
    free(own);
    return isfinite(value) ? 0 : 4;
}

int64_t bl_nutpie_logp(uint64_t dim, const double *x, double *grad, double *logp, const void *user_data) {
    if ((int64_t)dim != n_dim((const int64_t *)(uintptr_t)((const uint64_t *)user_data)[0])) return -1;
    int64_t rc = scratch_evaluate(x, grad, logp, NULL, (const uint64_t *)user_data);
    if (rc == 0)
        for (uint64_t i = 0; i < dim; i++)
            if (!isfinite(grad[i])) return 3;
    return rc;
}

int64_t bl_nutpie_expand(uint64_t dim, uint64_t n_expanded, const double *x, double *out, const void *user_data) {
    const int64_t *ints = (const int64_t *)(uintptr_t)((const uint64_t *)user_data)[0];
    if ((int64_t)dim != n_dim(ints) || (int64_t)n_expanded != bl_kernel_n_expanded(ints)) return -1;
    double *grad = calloc((size_t)(dim + 1), sizeof(double)), logp;
    if (!grad) return -2;
    int64_t rc = scratch_evaluate(x, grad, &logp, out, (const uint64_t *)user_data);
    free(grad);
    return rc == 0 ? 0 : -2;
}

/* The blocked Gibbs sampler's Schur complement (bayes_lmm/likelihood/gibbs_system.py):
 * S = A + diag(add) − Σ_l w_l b_l b_l', lower triangle only, row-major r×r, with b_l the row l
 * of the m×r CSR matrix B (column indices sorted within a row). A pair of a level's entries
 * costs one multiply-add: Σ_l nnz_l²/2 in all, against r²·m for a dense product. */
void bl_gibbs_schur(int64_t r, const double *A, const double *add, int64_t m, const int64_t *indptr,
                    const int64_t *indices, const double *data, const double *w, double *S) {
    for (int64_t i = 0; i < r; i++) {
        memcpy(S + i * r, A + i * r, (size_t)(i + 1) * sizeof(double));
        S[i * r + i] += add[i];
    }
    for (int64_t l = 0; l < m; l++) {
        const double wl = w[l];
        for (int64_t a = indptr[l]; a < indptr[l + 1]; a++) {
            const double va = wl * data[a];
            double *row = S + indices[a] * r;
            for (int64_t b = indptr[l]; b <= a; b++) row[indices[b]] -= va * data[b];
        }
    }
}
