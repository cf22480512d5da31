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
        let mut present = Vec::with_capacity(values.len());
        present.extend(values.iter().copied().filter(|v| v.is_finite()));
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
    let all_present =
        |row: usize| target[row].is_finite() && regressors.iter().all(|r| r[row].is_finite());
    // Usually every baseline row is present: then the columns are sliced as
    // they are; otherwise the usable rows are gathered.
    let contiguous = std::iter::once(target)
        .chain(regressors.iter().copied())
        .all(|series| series[rows.clone()].iter().all(|v| v.is_finite()));
    let usable: Vec<usize> = if contiguous {
        Vec::new()
    } else {
        rows.clone().filter(|&row| all_present(row)).collect()
    };
    let n_rows = if contiguous { rows.len() } else { usable.len() };
    if n_rows < k + 3 {
        return None;
    }
    let n = n_rows as f64;
    // Centred columns, each contiguous (column-major), so every entry of the
    // normal equations is one vectorisable dot product. Centring first keeps
    // them accurate for series far from zero.
    let mut x = vec![0.0; (k + 1) * n_rows];
    let mut means = vec![0.0; k + 1];
    for (column, (series, mean)) in std::iter::once(target)
        .chain(regressors.iter().copied())
        .zip(means.iter_mut())
        .enumerate()
    {
        let out = &mut x[column * n_rows..(column + 1) * n_rows];
        if contiguous {
            out.copy_from_slice(&series[rows.clone()]);
        } else {
            for (slot, &row) in out.iter_mut().zip(&usable) {
                *slot = series[row];
            }
        }
        *mean = out.iter().sum::<f64>() / n;
        out.iter_mut().for_each(|v| *v -= *mean);
    }
    let (y, xs) = x.split_at(n_rows);
    let column = |i: usize| &xs[i * n_rows..(i + 1) * n_rows];
    let mut gram = vec![0.0; k * k];
    let mut rhs = vec![0.0; k];
    for i in 0..k {
        rhs[i] = dot(column(i), y);
        for j in 0..=i {
            let value = dot(column(i), column(j));
            gram[i * k + j] = value;
            gram[j * k + i] = value;
        }
        // Penalty relative to each regressor's own variance keeps it scale-free.
        gram[i * k + i] += ridge * gram[i * k + i].max(1e-9) + 1e-12;
    }
    let coefficients = cholesky_solve(gram, rhs, k)?;
    let intercept = means[0]
        - coefficients
            .iter()
            .zip(&means[1..])
            .map(|(c, m)| c * m)
            .sum::<f64>();
    Some((intercept, coefficients))
}

/// Dot product with four independent accumulators (vectorises).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (chunks_a, chunks_b) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..4 {
            acc[lane] += x[lane] * y[lane];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Solves `a x = b` for a symmetric positive-definite `k`×`k` row-major `a`
/// (the ridge-penalised normal equations) by Cholesky decomposition, `a = L Lᵀ`.
/// `None` when `a` is not numerically positive definite.
fn cholesky_solve(mut a: Vec<f64>, mut b: Vec<f64>, k: usize) -> Option<Vec<f64>> {
    // L overwrites the lower triangle of `a`.
    for j in 0..k {
        let mut diagonal = a[j * k + j];
        for p in 0..j {
            diagonal -= a[j * k + p] * a[j * k + p];
        }
        if diagonal.is_nan() || diagonal <= 1e-15 {
            return None;
        }
        let diagonal = diagonal.sqrt();
        a[j * k + j] = diagonal;
        for i in j + 1..k {
            let mut value = a[i * k + j];
            for p in 0..j {
                value -= a[i * k + p] * a[j * k + p];
            }
            a[i * k + j] = value / diagonal;
        }
    }
    // Forward substitution L z = b, then back substitution Lᵀ x = z, in place.
    for i in 0..k {
        let mut value = b[i];
        for p in 0..i {
            value -= a[i * k + p] * b[p];
        }
        b[i] = value / a[i * k + i];
    }
    for i in (0..k).rev() {
        let mut value = b[i];
        for p in i + 1..k {
            value -= a[p * k + i] * b[p];
        }
        b[i] = value / a[i * k + i];
    }
    Some(b)
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
