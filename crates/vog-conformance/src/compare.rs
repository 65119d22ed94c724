//! Reading reference files and measuring how far a result is from them.

use std::path::Path;

/// Reads a whole `.npy` file (any numeric dtype) as `f32`, with its shape.
///
/// # Panics
///
/// When the file is missing or unreadable; the message names the file. A reference that is not
/// there fails the check that needs it: nothing is skipped.
pub fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let read = || -> vog_data::Result<(Vec<usize>, Vec<f32>)> {
        let mut a = vog_data::ArrayFile::open_npy(path)?;
        let shape = a.shape().to_vec();
        let rows = a.rows();
        let mut out = Vec::new();
        a.read_f32(0, rows, &mut out)?;
        Ok((shape, out))
    };
    read().unwrap_or_else(|e| panic!("vog-conformance: reading {}: {e}", path.display()))
}

/// Reads class labels from a one-dimensional `.npy` file (integers, or floats holding integers).
///
/// # Panics
///
/// As [`npy`], and on a negative or fractional label (naming the file and the row).
pub fn labels(path: &Path) -> Vec<u32> {
    let (_, values) = npy(path);
    values
        .iter()
        .enumerate()
        .map(|(row, &v)| {
            assert!(
                v >= 0.0 && v.fract() == 0.0,
                "vog-conformance: {} row {row}: label {v} is not a class index",
                path.display()
            );
            v as u32
        })
        .collect()
}

/// Reads a JSON file.
pub(crate) fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("vog-conformance: reading {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("vog-conformance: parsing {}: {e}", path.display()))
}

/// The worst element of a comparison against a reference (see [`worst`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Worst {
    /// The largest `|got − want| / scale`; NaN when any compared value is NaN.
    pub error: f64,
    /// Where it is (flat index).
    pub index: usize,
    /// The value found there.
    pub got: f32,
    /// The reference's value there.
    pub want: f32,
    /// The reference's largest magnitude (1 for an all-zero reference): the unit of `error`.
    pub scale: f64,
}

impl Worst {
    /// Whether the error is at most `tolerance`; NaN never is (see
    /// [`vog_core::within_tolerance`]).
    pub fn within(&self, tolerance: f64) -> bool {
        vog_core::within_tolerance(self.error, tolerance)
    }

    /// A sentence for a failure message: the error, where (row and element, for rows of
    /// `row_len`) and the two numbers.
    pub fn describe(&self, row_len: usize) -> String {
        let row_len = row_len.max(1);
        format!(
            "off by {:.3e} (relative to the reference's largest magnitude {:.3e}) at row {}, \
             element {}: got {}, want {}",
            self.error,
            self.scale,
            self.index / row_len,
            self.index % row_len,
            self.got,
            self.want
        )
    }
}

/// Compares `got` with the reference `want`: every element's `|got − want|` divided by the
/// reference's largest magnitude, and where the worst one is. A NaN or infinite value in `got`
/// makes the error NaN, which no tolerance accepts.
///
/// # Panics
///
/// When the lengths differ.
pub fn worst(got: &[f32], want: &[f32]) -> Worst {
    assert_eq!(
        got.len(),
        want.len(),
        "vog-conformance: comparing {} values with a reference of {}",
        got.len(),
        want.len()
    );
    let largest = want.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    let scale = if largest > 0.0 { largest } else { 1.0 };
    let mut w = Worst {
        error: 0.0,
        index: 0,
        got: got.first().copied().unwrap_or(0.0),
        want: want.first().copied().unwrap_or(0.0),
        scale,
    };
    for (i, (&g, &r)) in got.iter().zip(want).enumerate() {
        let e = (f64::from(g) - f64::from(r)).abs() / scale;
        let e = if e.is_finite() { e } else { f64::NAN };
        let worse = vog_core::worst_error(w.error, e);
        if (worse.is_nan() && !w.error.is_nan()) || worse > w.error {
            w = Worst {
                error: worse,
                index: i,
                got: g,
                want: r,
                scale,
            };
        }
    }
    w
}

/// The largest relative error of `got` against `want` (see [`worst`]).
///
/// # Panics
///
/// When the lengths differ.
pub fn max_rel(got: &[f32], want: &[f32]) -> f64 {
    worst(got, want).error
}

/// The first position where two slices differ bit for bit (or their lengths), if any.
pub(crate) fn first_bit_difference<T, B>(a: &[T], b: &[T], bits: impl Fn(T) -> B) -> Option<String>
where
    T: Copy + std::fmt::Debug,
    B: PartialEq + std::fmt::LowerHex,
{
    if a.len() != b.len() {
        return Some(format!("{} values versus {}", a.len(), b.len()));
    }
    let i = a.iter().zip(b).position(|(&x, &y)| bits(x) != bits(y))?;
    Some(format!(
        "element {i}: {:?} (bits {:#x}) versus {:?} (bits {:#x})",
        a[i],
        bits(a[i]),
        b[i],
        bits(b[i])
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_finds_the_largest_error_and_never_passes_nan() {
        let w = worst(&[1.0, 2.5, 3.0], &[1.0, 2.0, 4.0]);
        assert_eq!((w.index, w.got, w.want, w.scale), (2, 3.0, 4.0, 4.0));
        assert!((w.error - 0.25).abs() < 1e-12);
        assert!(w.within(0.25) && !w.within(0.2));
        let w = worst(&[1.0, f32::NAN, 3.0, 100.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!(w.error.is_nan() && w.index == 1 && !w.within(1e9));
        assert!(worst(&[f32::INFINITY], &[1.0]).error.is_nan());
        // An all-zero reference: absolute error.
        assert_eq!(worst(&[0.0, 0.5], &[0.0, 0.0]).error, 0.5);
        assert!(
            w.describe(2).contains("row 0, element 1"),
            "{}",
            w.describe(2)
        );
    }

    #[test]
    fn bit_differences_are_found_and_shown() {
        assert_eq!(
            first_bit_difference(&[1.0f32, 2.0], &[1.0, 2.0], f32::to_bits),
            None
        );
        let d = first_bit_difference(&[0.0f32], &[-0.0], f32::to_bits).unwrap();
        assert!(d.contains("element 0") && d.contains("0x80000000"), "{d}");
        assert!(first_bit_difference(&[1.0f64], &[], f64::to_bits).is_some());
    }
}
