//! Counter-based randomness and the distribution maths of the aggregates.
//!
//! Aggregates draw their noise from a hash of (seed, stream, entity, minute)
//! rather than from a sequential generator, so a minute's values do not depend
//! on which chunk or in which order it is generated.

/// Standard normal quantile at 0.90.
pub(crate) const Z90: f64 = 1.281_551_565_544_601;
/// Standard normal quantile at 0.99.
pub(crate) const Z99: f64 = 2.326_347_874_040_841;

/// Noise streams: one per kind of quantity, so quantities never share draws.
pub(crate) mod stream {
    pub const TRAFFIC: u64 = 1;
    pub const EDGE_TRAFFIC: u64 = 2;
    pub const LATENCY: u64 = 3;
    pub const ERRORS: u64 = 4;
    pub const EDGE_ERRORS: u64 = 5;
    pub const CPU: u64 = 6;
    pub const MEMORY: u64 = 7;
    pub const RETRANSMITS: u64 = 8;
    pub const STATEMENTS: u64 = 9;
    pub const DEPLOY: u64 = 10;
    pub const RECORDS: u64 = 11;
    pub const SAMPLES: u64 = 12;
}

/// SplitMix64's finaliser: a cheap, well-mixing bijection on 64 bits.
#[inline]
pub(crate) fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 random bits for one (stream, entity, step) under `seed`.
#[inline]
pub(crate) fn hash(seed: u64, stream: u64, entity: u64, step: u64) -> u64 {
    mix(mix(seed
        ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93)
        ^ entity.wrapping_mul(0xA076_1D64_78BD_642F))
        ^ step)
}

/// Uniform in `[0, 1)` from 53 of the bits.
#[inline]
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Approximately standard normal (Irwin–Hall of four 16-bit uniforms): cheap,
/// and bounded at ±3.5, so fault-free data has no freak outliers.
#[inline]
pub(crate) fn gauss(bits: u64) -> f64 {
    let sum = (bits & 0xFFFF) + ((bits >> 16) & 0xFFFF) + ((bits >> 32) & 0xFFFF) + (bits >> 48);
    (sum as f64 / 65_536.0 - 2.0) * 3f64.sqrt()
}

/// A Poisson-distributed count with mean `lambda` (normal approximation above 30).
pub(crate) fn poisson(lambda: f64, bits: u64) -> f64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 0.0;
    }
    if lambda < 30.0 {
        let target = unit(bits);
        let mut probability = (-lambda).exp();
        let mut cumulative = probability;
        let mut count = 0.0;
        while cumulative < target && count < 200.0 {
            count += 1.0;
            probability *= lambda / count;
            cumulative += probability;
        }
        count
    } else {
        (lambda + lambda.sqrt() * gauss(mix(bits))).round().max(0.0)
    }
}

/// The standard normal CDF (Abramowitz–Stegun 7.1.26, error below 1.5e-7).
pub(crate) fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    if z >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

/// A lognormal latency distribution, ms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LogNormal {
    /// Mean of the log.
    pub mu: f64,
    /// Standard deviation of the log.
    pub sigma: f64,
}

impl LogNormal {
    /// The lognormal with this mean and variance (Fenton–Wilkinson moment matching).
    pub fn from_moments(mean: f64, variance: f64) -> Self {
        let mean = mean.max(1e-6);
        let sigma2 = (1.0 + variance.max(0.0) / (mean * mean)).ln();
        Self {
            mu: mean.ln() - sigma2 / 2.0,
            sigma: sigma2.sqrt(),
        }
    }

    /// Mean.
    pub fn mean(self) -> f64 {
        (self.mu + self.sigma * self.sigma / 2.0).exp()
    }

    /// Variance.
    pub fn variance(self) -> f64 {
        let mean = self.mean();
        mean * mean * ((self.sigma * self.sigma).exp() - 1.0)
    }

    /// p50, p90, p99.
    pub fn quantiles(self) -> [f64; 3] {
        [
            self.mu.exp(),
            (self.mu + Z90 * self.sigma).exp(),
            (self.mu + Z99 * self.sigma).exp(),
        ]
    }
}

/// One component of a latency mixture: with probability `weight`, a lognormal
/// shifted by a constant `shift_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Component {
    pub weight: f64,
    pub mu: f64,
    pub sigma: f64,
    pub shift_ms: f64,
}

/// p50, p90, p99 of a mixture of shifted lognormals, by bisection on the CDF.
pub(crate) fn mixture_quantiles(components: &[Component]) -> [f64; 3] {
    let total: f64 = components.iter().map(|c| c.weight).sum();
    if components.is_empty() || total.is_nan() || total <= 0.0 {
        return [f64::NAN; 3];
    }
    let cdf = |x: f64| -> f64 {
        components
            .iter()
            .filter(|c| x > c.shift_ms)
            .map(|c| c.weight * normal_cdf(((x - c.shift_ms).ln() - c.mu) / c.sigma.max(1e-9)))
            .sum::<f64>()
            / total
    };
    let low = components
        .iter()
        .map(|c| c.shift_ms + (c.mu - 8.0 * c.sigma).exp())
        .fold(f64::INFINITY, f64::min);
    let high = components
        .iter()
        .map(|c| c.shift_ms + (c.mu + 8.0 * c.sigma).exp())
        .fold(0.0, f64::max);
    [0.5, 0.9, 0.99].map(|p| {
        let (mut lo, mut hi) = (low, high);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if cdf(mid) < p {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    })
}

/// Mean and second moment of a mixture of shifted lognormals.
pub(crate) fn mixture_moments(components: &[Component]) -> (f64, f64) {
    let total: f64 = components.iter().map(|c| c.weight).sum();
    if total.is_nan() || total <= 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let (mut mean, mut second) = (0.0, 0.0);
    for c in components {
        let log = LogNormal {
            mu: c.mu,
            sigma: c.sigma,
        };
        let m = log.mean();
        let ex2 = log.variance() + m * m;
        mean += c.weight * (m + c.shift_ms);
        second += c.weight * (ex2 + 2.0 * c.shift_ms * m + c.shift_ms * c.shift_ms);
    }
    (mean / total, second / total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_has_unit_variance() {
        let n = 200_000u64;
        let (mut sum, mut sq) = (0.0, 0.0);
        for i in 0..n {
            let z = gauss(hash(1, 2, 3, i));
            sum += z;
            sq += z * z;
        }
        let mean = sum / n as f64;
        let variance = sq / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((variance - 1.0).abs() < 0.02, "{variance}");
    }

    #[test]
    fn poisson_has_its_mean() {
        for lambda in [0.05, 3.0, 400.0] {
            let n = 50_000u64;
            let sum: f64 = (0..n).map(|i| poisson(lambda, hash(9, 1, 1, i))).sum();
            let mean = sum / n as f64;
            assert!(
                (mean - lambda).abs() < 0.03 * lambda + 0.01,
                "{lambda}: {mean}"
            );
        }
    }

    #[test]
    fn single_component_mixture_matches_lognormal() {
        let log = LogNormal {
            mu: 1.0,
            sigma: 0.5,
        };
        let mixed = mixture_quantiles(&[Component {
            weight: 1.0,
            mu: 1.0,
            sigma: 0.5,
            shift_ms: 0.0,
        }]);
        for (a, b) in mixed.iter().zip(log.quantiles()) {
            assert!((a / b - 1.0).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn moment_matching_round_trips() {
        let log = LogNormal {
            mu: 0.3,
            sigma: 0.7,
        };
        let back = LogNormal::from_moments(log.mean(), log.variance());
        assert!((back.mu - log.mu).abs() < 1e-9 && (back.sigma - log.sigma).abs() < 1e-9);
    }
}
