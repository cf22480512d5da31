//! Small robust-statistics helpers over slices: medians, MAD, least squares and
//! the normal tail. Everything skips `NaN` (a gap is not a zero).

/// Scale factor that makes the MAD estimate a normal standard deviation.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// Median of the finite values of `values`; `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    median_in_place(&mut finite)
}

/// Median of `values`, reordering them; all values must be finite.
pub fn median_in_place(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (_, upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = values[..mid]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    Some((lower + upper) / 2.0)
}

/// Median of at most 16 finite values without allocating (insertion sort):
/// the baseline's inner loop calls this once per scored point.
#[inline]
pub fn small_median(values: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    for i in 1..n {
        let mut j = i;
        while j > 0 && values[j - 1] > values[j] {
            values.swap(j - 1, j);
            j -= 1;
        }
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Median absolute deviation from `center`, scaled to a normal sigma; `None` without data.
pub fn mad(values: &[f64], center: f64) -> Option<f64> {
    let mut deviations: Vec<f64> = values
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| (v - center).abs())
        .collect();
    median_in_place(&mut deviations).map(|m| m * MAD_TO_SIGMA)
}

/// Ordinary least squares `y ≈ intercept + slope · x` over pairs where both are
/// finite; `None` with fewer than three pairs or no spread in `x`.
///
/// Closed form from sums: one pass, no allocation (detectors fit thousands of
/// short windows).
pub fn least_squares(x: &[f64], y: &[f64]) -> Option<LinearFit> {
    let mut sums = Sums::default();
    for (&a, &b) in x.iter().zip(y) {
        sums.add(a, b);
    }
    sums.fit()
}

/// Running sums for least squares, so sliding windows update in O(1).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sums {
    n: f64,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
    yy: f64,
}

impl Sums {
    /// Adds a pair (skipped unless both are finite).
    pub fn add(&mut self, x: f64, y: f64) {
        if x.is_finite() && y.is_finite() {
            self.n += 1.0;
            self.x += x;
            self.y += y;
            self.xx += x * x;
            self.xy += x * y;
            self.yy += y * y;
        }
    }

    /// Removes a pair added before.
    pub fn remove(&mut self, x: f64, y: f64) {
        if x.is_finite() && y.is_finite() {
            self.n -= 1.0;
            self.x -= x;
            self.y -= y;
            self.xx -= x * x;
            self.xy -= x * y;
            self.yy -= y * y;
        }
    }

    /// The least-squares line of the pairs held.
    pub fn fit(&self) -> Option<LinearFit> {
        if self.n < 3.0 {
            return None;
        }
        let sxx = self.xx - self.x * self.x / self.n;
        let sxy = self.xy - self.x * self.y / self.n;
        let syy = self.yy - self.y * self.y / self.n;
        if sxx <= f64::EPSILON * self.xx.abs().max(1.0) {
            return None;
        }
        let slope = sxy / sxx;
        let intercept = (self.y - slope * self.x) / self.n;
        let r_squared = if syy > 0.0 {
            (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Some(LinearFit {
            intercept,
            slope,
            r_squared,
        })
    }
}

/// A fitted line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearFit {
    /// Value at x = 0.
    pub intercept: f64,
    /// Change of y per unit of x.
    pub slope: f64,
    /// Share of y's variance the line explains.
    pub r_squared: f64,
}

/// Upper tail of the standard normal, P(Z > z).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_skips_gaps_and_averages_even_counts() {
        assert_eq!(median(&[3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(small_median(&mut [5.0, 1.0, 4.0, 2.0]), 3.0);
    }

    #[test]
    fn mad_of_normal_like_data_is_near_sigma() {
        let values: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f64 / 1000.0)
            .collect();
        let sigma = mad(&values, 0.5).expect("data");
        // Uniform(0,1) has MAD 0.25 → 0.37 scaled.
        assert!((sigma - 0.37).abs() < 0.01, "{sigma}");
    }

    #[test]
    fn least_squares_recovers_a_line() {
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|v| 2.0 + 0.5 * v).collect();
        let fit = least_squares(&x, &y).expect("fit");
        assert!((fit.slope - 0.5).abs() < 1e-9 && (fit.intercept - 2.0).abs() < 1e-9);
        assert!(fit.r_squared > 0.999);
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-12);
    }
}
