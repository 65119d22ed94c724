//! Natural ordering of file names: `epoch_2` before `epoch_10`.

use std::cmp::Ordering;

/// Compares two strings so that runs of ASCII digits compare by numeric value.
///
/// ```
/// let mut names = vec!["epoch_10.safetensors", "epoch_2.safetensors", "epoch_1.safetensors"];
/// names.sort_by(|a, b| vog_core::natural_cmp(a, b));
/// assert_eq!(names, ["epoch_1.safetensors", "epoch_2.safetensors", "epoch_10.safetensors"]);
/// ```
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let (si, sj) = (i, j);
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let (na, nb) = (trim_zeros(&a[si..i]), trim_zeros(&b[sj..j]));
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            // Equal values with different padding: shorter (fewer zeros) first, for a total order.
            let ord = ord.then_with(|| (i - si).cmp(&(j - sj)));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let start = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    &digits[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        let mut v = vec!["ck10", "ck9", "ck100", "ck09", "ck1", "a", "ck"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["a", "ck", "ck1", "ck9", "ck09", "ck10", "ck100"]);
        assert_eq!(natural_cmp("run2/epoch_3", "run10/epoch_1"), Ordering::Less);
        assert_eq!(natural_cmp("x", "x"), Ordering::Equal);
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        assert_eq!(
            natural_cmp("e99999999999999999999999", "e100000000000000000000000"),
            Ordering::Less
        );
    }
}
