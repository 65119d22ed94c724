//! Dataset readers for **vog**.
//!
//! Examples come from `.npy` (any numeric dtype, read as `f32`), `.npz`, IDX (the MNIST format,
//! optionally gzipped) or CSV; labels from `.npy`/`.npz`/IDX, a CSV column or a text file; ids and
//! metadata from CSV or JSON lines. Array files are read row by row so that memory stays flat in
//! the number of examples.
//!
//! ```
//! # fn main() -> Result<(), vog_data::Error> {
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("x.npy");
//! vog_data::write_npy_f32(&path, &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let mut x = vog_data::open_examples(&path, None, None, &Default::default())?;
//! assert_eq!((x.len(), x.row_shape()), (3, &[2][..]));
//! let mut rows = Vec::new();
//! x.read_rows(1, 2, &mut rows)?;
//! assert_eq!(rows, [3.0, 4.0, 5.0, 6.0]);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod annotations;
mod array;
mod dataset;
mod dtype;
mod error;

pub use annotations::{metadata_key, read_ids, read_metadata, visit_ids, visit_metadata, Record};
pub use array::{write_npy_f32, write_npy_i64, ArrayFile};
pub use dataset::{open_examples, read_labels, CsvColumns, CsvTable, ExampleSource, Format};
pub use dtype::DType;
pub use error::{Error, Result};
