//! A run's input examples read back for drawing: the data file its manifest names, opened once
//! and read row by row, each row shaped as the model saw it ([`InputReader`]).

use std::path::PathBuf;

use serde::Serialize;
use vog_results::Manifest;

/// A tensor for the browser to draw.
#[derive(Debug, Serialize)]
pub struct TensorJson {
    /// Shape of one example (no batch dimension).
    pub shape: Vec<usize>,
    /// `image` (`[H, W]`, `[C, H, W]` with C of 1 or 3, `[H, W, C]`) or `table`.
    pub layout: &'static str,
    /// Row-major values.
    pub data: Vec<f32>,
    /// Feature names for tabular data (CSV columns), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

/// `image` when the shape can be drawn as a picture, else `table`.
pub fn layout_of(shape: &[usize]) -> &'static str {
    let small = |c: usize| c == 1 || c == 3;
    match shape {
        [h, w] if *h >= 4 && *w >= 4 => "image",
        [c, h, w] if small(*c) && *h >= 4 && *w >= 4 => "image",
        [h, w, c] if small(*c) && *h >= 4 && *w >= 4 => "image",
        _ => "table",
    }
}

/// The input data of a run, opened once from its manifest (`run.json`) and read row by row.
pub struct InputReader {
    path: PathBuf,
    source: Box<dyn vog_data::ExampleSource>,
    /// The shape rows are drawn in: the stored shape, or `data.input_shape` when the model saw
    /// flat rows as images.
    shape: Vec<usize>,
    features: Option<Vec<String>>,
}

impl InputReader {
    /// Opens the data file the manifest names; the error says which file and why.
    pub fn open(manifest: &Manifest) -> Result<Self, String> {
        let d = manifest.input();
        let path = d
            .path
            .clone()
            .ok_or("this run was scored from stored gradients: it has no input data")?;
        let gone = |e: vog_data::Error| e.to_string();
        let format = d.format.as_deref().and_then(vog_data::Format::from_name);
        let csv = vog_data::CsvColumns {
            label: d.label_column.clone(),
            id: d.id_column.clone(),
            features: d.features.clone(),
        };
        let is_csv = match format {
            Some(f) => f == vog_data::Format::Csv,
            None => vog_data::Format::detect(&path).map_err(gone)? == vog_data::Format::Csv,
        };
        let mut features = None;
        let source: Box<dyn vog_data::ExampleSource> = if is_csv {
            let t = vog_data::CsvTable::open(&path, &csv).map_err(gone)?;
            features = Some(t.feature_names().to_vec());
            Box::new(t)
        } else {
            vog_data::open_examples(&path, format, d.key.as_deref(), &csv).map_err(gone)?
        };
        let mut shape = source.row_shape().to_vec();
        // Flat rows that the model saw as images (data.input_shape) are drawn as images.
        if let Some(s) = d.input_shape {
            if layout_of(&shape) == "table"
                && layout_of(&s) == "image"
                && s.iter().product::<usize>() == shape.iter().product::<usize>()
            {
                shape = s;
            }
        }
        Ok(InputReader {
            path,
            source,
            shape,
            features,
        })
    }

    /// `image` or `table`, for every row of this data.
    pub fn layout(&self) -> &'static str {
        layout_of(&self.shape)
    }

    /// One row, shaped for drawing.
    pub fn read(&mut self, row: usize) -> Result<TensorJson, String> {
        if row >= self.source.len() {
            return Err(format!(
                "{}: row {row} requested, the file has {} (did the data change after scoring?)",
                self.path.display(),
                self.source.len()
            ));
        }
        let mut data = Vec::new();
        self.source
            .read_rows(row, 1, &mut data)
            .map_err(|e| e.to_string())?;
        Ok(TensorJson {
            layout: self.layout(),
            shape: self.shape.clone(),
            data,
            features: self.features.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(layout_of(&[28, 28]), "image");
        assert_eq!(layout_of(&[3, 32, 32]), "image");
        assert_eq!(layout_of(&[32, 32, 3]), "image");
        assert_eq!(layout_of(&[784]), "table");
        assert_eq!(layout_of(&[2]), "table");
        assert_eq!(layout_of(&[16, 8, 8]), "table");
    }
}
