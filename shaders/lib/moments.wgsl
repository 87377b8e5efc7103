// moments.wgsl — count, mean and centred sum of squares (M2) of a set of values, and Chan's
// parallel merge of two such sets, for the norms' statistics (groupnorm.wgsl, layernorm.wgsl
// require it). Never E[v²] - E[v]², which would cancel under a large common offset.
// requires: elem
//
// Chan's merge of (na, ma, Ma) and (nb, mb, Mb): d = mb - ma, n = na + nb, m = ma + d * nb / n,
// M = Ma + Mb + d² na nb / n — only differences of nearby means. Welford's update of a running
// (n, mean, M2) by one value is the same merge with nb = 1 (`welford`). Counts are f32, exact
// below 2^24 (the hosts check).

struct Moments {
    n: f32,
    mean: f32,
    m2: f32,
}

fn merge(a: Moments, b: Moments) -> Moments {
    let n = a.n + b.n;
    if (n == 0.0) {
        return a;
    }
    let d = b.mean - a.mean;
    let wb = b.n / n;
    return Moments(n, a.mean + d * wb, a.m2 + b.m2 + d * d * a.n * wb);
}

// Welford's update of per-component running means and M2s by the `count`-th values `v`.
fn welford(mean: ptr<function, V>, m2: ptr<function, V>, v: V, count: u32) {
    let d = v - *mean;
    *mean += d * splat(1.0 / f32(count));
    *m2 += d * (v - *mean);
}

// The moments of `count` values in each component, from the components' running means and M2s
// (Chan's merges of the vec4's components).
fn component_moments(count: u32, mean: V, m2: V) -> Moments {
    let n = f32(count);
#if VEC4
    return merge(merge(Moments(n, mean.x, m2.x), Moments(n, mean.y, m2.y)),
                 merge(Moments(n, mean.z, m2.z), Moments(n, mean.w, m2.w)));
#else
    return Moments(n, mean, m2);
#endif
}
