//! Small robust statistics over series with `NaN` gaps.

/// Values that are not `NaN`, sorted.
fn sorted_present(values: &[f64]) -> Vec<f64> {
    let mut present: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    present.sort_by(f64::total_cmp);
    present
}

fn median_of_sorted(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    Some(if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    })
}

/// Median by selection (linear time); reorders `values`, which must be finite.
fn select_median(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (low, upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = low.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lower + upper) / 2.0)
}

/// Mean and (population) standard deviation of the present values.
pub(crate) fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    let mut count = 0usize;
    let mut sum = 0.0;
    for v in values.iter().filter(|v| v.is_finite()) {
        count += 1;
        sum += v;
    }
    if count == 0 {
        return None;
    }
    let mean = sum / count as f64;
    let var = values
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| (v - mean) * (v - mean))
        .sum::<f64>()
        / count as f64;
    Some((mean, var.sqrt()))
}

/// Location and scale of a baseline for z-scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Baseline {
    pub center: f64,
    pub scale: f64,
}

impl Baseline {
    /// Median and MAD (scaled to a normal σ), falling back to the standard
    /// deviation and then to 1 when the baseline is flat, so a metric that was
    /// constant and then moved still scores (as scikit-learn's scalers do).
    pub(crate) fn robust(values: &[f64]) -> Option<Self> {
        let mut present: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let center = select_median(&mut present)?;
        present.iter_mut().for_each(|v| *v = (*v - center).abs());
        let mad = select_median(&mut present).unwrap_or(0.0) * 1.4826;
        let scale = if mad > 1e-12 {
            mad
        } else {
            match mean_std(values) {
                Some((_, std)) if std > 1e-12 => std,
                _ => 1.0,
            }
        };
        Some(Self { center, scale })
    }

    /// BARO's scaler: median and inter-quartile range (1 when the range is zero).
    pub(crate) fn interquartile(values: &[f64]) -> Option<Self> {
        let sorted = sorted_present(values);
        let center = median_of_sorted(&sorted)?;
        let q = |p: f64| {
            let pos = p * (sorted.len() - 1) as f64;
            let low = pos.floor() as usize;
            let high = pos.ceil() as usize;
            sorted[low] + (sorted[high] - sorted[low]) * (pos - low as f64)
        };
        let iqr = q(0.75) - q(0.25);
        Some(Self {
            center,
            scale: if iqr > 1e-12 { iqr } else { 1.0 },
        })
    }

    /// Mean and standard deviation (1 when zero): the N-sigma rule's baseline.
    pub(crate) fn gaussian(values: &[f64]) -> Option<Self> {
        let (center, std) = mean_std(values)?;
        Some(Self {
            center,
            scale: if std > 1e-12 { std } else { 1.0 },
        })
    }

    pub(crate) fn z(&self, value: f64) -> f64 {
        if value.is_finite() {
            (value - self.center) / self.scale
        } else {
            0.0
        }
    }
}

/// Least-squares fit of `target` on `regressors` (each a column, same length as
/// `target`) with a small ridge penalty, over the rows in `rows` where every
/// value is present. Returns the intercept and coefficients, or `None` when too
/// few rows remain to fit.
pub(crate) fn ridge_fit(
    target: &[f64],
    regressors: &[&[f64]],
    rows: std::ops::Range<usize>,
    ridge: f64,
) -> Option<(f64, Vec<f64>)> {
    let k = regressors.len();
    let usable: Vec<usize> = rows
        .filter(|&row| target[row].is_finite() && regressors.iter().all(|r| r[row].is_finite()))
        .collect();
    if usable.len() < k + 3 {
        return None;
    }
    let n = usable.len() as f64;
    // Centre everything so the intercept drops out of the normal equations.
    let target_mean = usable.iter().map(|&row| target[row]).sum::<f64>() / n;
    let means: Vec<f64> = regressors
        .iter()
        .map(|r| usable.iter().map(|&row| r[row]).sum::<f64>() / n)
        .collect();
    // Gather the centred rows contiguously: the regressors are separate
    // columns, and striding across them row by row is what costs.
    let mut x = Vec::with_capacity(usable.len() * k);
    for &row in &usable {
        x.extend(regressors.iter().zip(&means).map(|(r, m)| r[row] - m));
    }
    let mut gram = vec![0.0; k * k];
    let mut rhs = vec![0.0; k];
    for (&row, xs) in usable.iter().zip(x.chunks_exact(k.max(1))) {
        let y = target[row] - target_mean;
        for i in 0..k {
            let xi = xs[i];
            rhs[i] += xi * y;
            for j in 0..=i {
                gram[i * k + j] += xi * xs[j];
            }
        }
    }
    for i in 0..k {
        for j in 0..i {
            gram[j * k + i] = gram[i * k + j];
        }
        // Penalty relative to each regressor's own variance keeps it scale-free.
        gram[i * k + i] += ridge * gram[i * k + i].max(1e-9) + 1e-12;
    }
    let coefficients = solve(gram, rhs, k)?;
    let intercept = target_mean
        - coefficients
            .iter()
            .zip(&means)
            .map(|(c, m)| c * m)
            .sum::<f64>();
    Some((intercept, coefficients))
}

/// Gaussian elimination with partial pivoting on a `k`×`k` row-major system.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, k: usize) -> Option<Vec<f64>> {
    for col in 0..k {
        let pivot =
            (col..k).max_by(|&x, &y| a[x * k + col].abs().total_cmp(&a[y * k + col].abs()))?;
        if a[pivot * k + col].abs() < 1e-15 {
            return None;
        }
        if pivot != col {
            for j in 0..k {
                a.swap(pivot * k + j, col * k + j);
            }
            b.swap(pivot, col);
        }
        for row in col + 1..k {
            let factor = a[row * k + col] / a[col * k + col];
            if factor == 0.0 {
                continue;
            }
            for j in col..k {
                a[row * k + j] -= factor * a[col * k + j];
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; k];
    for row in (0..k).rev() {
        let tail: f64 = (row + 1..k).map(|j| a[row * k + j] * x[j]).sum();
        x[row] = (b[row] - tail) / a[row * k + row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_baseline_ignores_outliers_and_gaps() {
        let values = [1.0, 2.0, 3.0, f64::NAN, 1000.0, 2.0];
        let baseline = Baseline::robust(&values).expect("values");
        assert_eq!(baseline.center, 2.0);
        assert!(baseline.scale < 2.0, "{baseline:?}");
    }

    #[test]
    fn flat_baseline_scales_by_one() {
        let baseline = Baseline::robust(&[0.0; 8]).expect("values");
        assert_eq!(baseline.scale, 1.0);
        assert_eq!(baseline.z(3.0), 3.0);
    }

    #[test]
    fn ridge_fit_recovers_a_linear_relation() {
        let x: Vec<f64> = (0..50).map(|i| ((i * 37) % 11) as f64).collect();
        let z: Vec<f64> = (0..50).map(|i| ((i * 17) % 7) as f64).collect();
        let y: Vec<f64> = x.iter().zip(&z).map(|(a, b)| 3.0 + 2.0 * a - b).collect();
        let (intercept, coefficients) = ridge_fit(&y, &[&x, &z], 0..50, 1e-9).expect("enough rows");
        assert!((intercept - 3.0).abs() < 1e-6, "{intercept}");
        assert!((coefficients[0] - 2.0).abs() < 1e-6);
        assert!((coefficients[1] + 1.0).abs() < 1e-6);
    }
}
