// activations.wgsl — the activation functions, for the kernels with an `ACT` override (they list
// it in their `// requires:` line).
//
// ACT codes (match `ops::Activation`): 0 none, 1 relu, 2 gelu (erf), 3 gelu-tanh, 4 silu,
// 5 sigmoid, 6 tanh.
// Numerics: no `exp` of a large positive argument (its result is not guaranteed to be +inf in
// WGSL), so sigmoid and tanh are evaluated on -|x|. erf uses Abramowitz & Stegun 7.1.26
// (|error| <= 1.5e-7, below the 1e-6 budget).

fn erf_approx(x: f32) -> f32 {
    let ax = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * exp(-ax * ax);
    return select(y, -y, x < 0.0);
}

fn sigmoid_stable(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}

fn tanh_stable(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    let t = (1.0 - e) / (1.0 + e);
    return select(-t, t, x >= 0.0);
}

// The activation the including kernel's `ACT` override selects. Only that case is in the
// assembled source (`#if ACT == ..`): a switch over every activation, inlined at each output a
// tile stores, made a pipeline many times slower to create and JIT-compile on lavapipe.
fn activated(x: f32) -> f32 {
#if ACT == 0
    return x;
#endif
#if ACT == 1
    return max(x, 0.0);
#endif
#if ACT == 2
    return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752));
#endif
#if ACT == 3
    return 0.5 * x * (1.0 + tanh_stable(0.79788456080286536 * (x + 0.044715 * x * x * x)));
#endif
#if ACT == 4
    return x * sigmoid_stable(x);
#endif
#if ACT == 5
    return sigmoid_stable(x);
#endif
#if ACT == 6
    return tanh_stable(x);
#endif
}

fn activated4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(activated(v.x), activated(v.y), activated(v.z), activated(v.w));
}
