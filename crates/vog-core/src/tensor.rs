//! Plain dense tensors: row-major `f32` data with a shape, batch dimension first.

use crate::{Error, Result};

/// A borrowed dense tensor: row-major `f32` values and their shape.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    shape: &'a [usize],
    data: &'a [f32],
}

impl<'a> TensorView<'a> {
    /// Wraps `data` as a tensor of `shape`; fails when the element counts differ.
    pub fn new(shape: &'a [usize], data: &'a [f32]) -> Result<Self> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(Error::Shape(format!(
                "shape {shape:?} holds {expected} values, buffer has {}",
                data.len()
            )));
        }
        Ok(TensorView { shape, data })
    }

    /// The full shape, batch dimension first.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// The values in row-major order.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Size of the leading (batch) dimension; 0 for a scalar.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Shape of one row (everything after the batch dimension).
    pub fn row_shape(&self) -> &'a [usize] {
        self.shape.get(1..).unwrap_or(&[])
    }

    /// Number of values in one row.
    pub fn row_len(&self) -> usize {
        self.row_shape().iter().product()
    }
}

/// An owned dense tensor: row-major `f32` values and their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The full shape, batch dimension first.
    pub shape: Vec<usize>,
    /// The values in row-major order.
    pub data: Vec<f32>,
}

impl Tensor {
    /// Builds a tensor, checking that `data` fills `shape` exactly.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        TensorView::new(&shape, &data)?;
        Ok(Tensor { shape, data })
    }

    /// Borrows the tensor.
    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            shape: &self.shape,
            data: &self.data,
        }
    }
}

/// Formats a per-example shape the way error messages show it: `[N, 1, 28, 28]`.
pub fn batch_shape_string(row_shape: &[usize]) -> String {
    let mut s = String::from("[N");
    for d in row_shape {
        s.push_str(&format!(", {d}"));
    }
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_checks_element_count() {
        let data = [0.0f32; 6];
        assert!(TensorView::new(&[2, 3], &data).is_ok());
        let err = TensorView::new(&[2, 4], &data).unwrap_err();
        assert!(
            err.to_string().contains("holds 8 values, buffer has 6"),
            "{err}"
        );
    }

    #[test]
    fn row_geometry() {
        let data = [0.0f32; 24];
        let v = TensorView::new(&[2, 3, 2, 2], &data).unwrap();
        assert_eq!(v.rows(), 2);
        assert_eq!(v.row_shape(), &[3, 2, 2]);
        assert_eq!(v.row_len(), 12);
        assert_eq!(batch_shape_string(&[1, 28, 28]), "[N, 1, 28, 28]");
    }
}
