//! Array files read row by row: `.npy`, arrays inside `.npz`, and IDX (optionally gzipped).
//!
//! Only the header is read when a file is opened; rows are read on demand, so memory does not grow
//! with the dataset. Plain files are read at an offset; compressed ones (`.npz` made by
//! `savez_compressed`, `.idx.gz`) are decompressed as a stream, which is fast for the sequential
//! access the engine does and restarts from the beginning when asked to go backwards.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::{DType, Error, Result};

/// Where the raw row bytes of an array start and how to get at them.
#[derive(Debug, Clone)]
enum Layout {
    /// Uncompressed bytes at `offset` in `path`.
    Plain { offset: u64 },
    /// A raw-deflate stream at `offset` (a zip member); row bytes start `skip` bytes into it.
    Deflate { offset: u64, skip: u64 },
    /// A gzip file whose row bytes start `skip` bytes into the decompressed stream.
    Gzip { skip: u64 },
}

/// An array stored in a file, read by rows along its first axis.
pub struct ArrayFile {
    path: PathBuf,
    dtype: DType,
    big_endian: bool,
    shape: Vec<usize>,
    layout: Layout,
    plain: Option<File>,
    stream: Option<(Box<dyn Read + Send>, usize)>,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for ArrayFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayFile")
            .field("path", &self.path)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .finish()
    }
}

impl ArrayFile {
    /// Opens an `.npy` file.
    pub fn open_npy(path: &Path) -> Result<Self> {
        let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
        let header = read_npy_header(&mut f, path)?;
        let file_len = f.metadata().map_err(|e| Error::io(path, e))?.len();
        let offset = header.header_len;
        let mut a = ArrayFile::new(path, header, Layout::Plain { offset });
        a.check_plain_size(file_len)?;
        a.plain = Some(f);
        Ok(a)
    }

    /// Opens array `key` of an `.npz` archive (`key` with or without `.npy`). With `key = None`
    /// the archive must hold exactly one array.
    pub fn open_npz(path: &Path, key: Option<&str>) -> Result<Self> {
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut zip = zip::ZipArchive::new(BufReader::new(f))
            .map_err(|e| Error::format(path, format!("not a valid .npz (zip) archive: {e}")))?;
        let names: Vec<String> = zip
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.to_string()))
            .collect();
        let member = match key {
            Some(k) => {
                let want = if k.ends_with(".npy") {
                    k.to_string()
                } else {
                    format!("{k}.npy")
                };
                names.iter().find(|n| **n == want).cloned().ok_or_else(|| {
                    Error::format(
                        path,
                        format!(
                            "no array `{k}` in archive; it holds: {}",
                            list_arrays(&names)
                        ),
                    )
                })?
            }
            None if names.len() == 1 => names[0].clone(),
            None => {
                return Err(Error::format(
                    path,
                    format!(
                        "archive holds several arrays ({}); say which with `key`",
                        list_arrays(&names)
                    ),
                ))
            }
        };
        let (method, data_start) = {
            let entry = zip
                .by_name_raw(member.as_bytes())
                .map_err(|e| Error::format(path, format!("member {member}: {e}")))?;
            let start = entry
                .data_start()
                .ok_or_else(|| Error::format(path, format!("member {member}: no data offset")))?;
            (entry.compression(), start)
        };
        let display = PathBuf::from(format!("{}[{member}]", path.display()));
        match method {
            m if m == zip::CompressionMethod::STORE => {
                let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
                f.seek(SeekFrom::Start(data_start)).map_err(|e| Error::io(path, e))?;
                let header = read_npy_header(&mut f, &display)?;
                let offset = data_start + header.header_len;
                let file_len = f.metadata().map_err(|e| Error::io(path, e))?.len();
                let mut a = ArrayFile::new(&display, header, Layout::Plain { offset });
                a.check_plain_size(file_len)?;
                a.path = path.to_path_buf();
                a.plain = Some(f);
                Ok(a)
            }
            m if m == zip::CompressionMethod::DEFLATE => {
                let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
                f.seek(SeekFrom::Start(data_start)).map_err(|e| Error::io(path, e))?;
                let mut dec = flate2::read::DeflateDecoder::new(BufReader::new(f));
                let header = read_npy_header(&mut dec, &display)?;
                let skip = header.header_len;
                let mut a = ArrayFile::new(path, header, Layout::Deflate { offset: data_start, skip });
                a.stream = Some((Box::new(dec), 0));
                Ok(a)
            }
            other => Err(Error::format(
                path,
                format!("member {member} uses compression {other:?}; only stored and deflate are supported"),
            )),
        }
    }

    /// Opens an IDX file (the MNIST format); a gzip-compressed file is detected by its magic bytes.
    pub fn open_idx(path: &Path) -> Result<Self> {
        let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut magic = [0u8; 2];
        f.read_exact(&mut magic).map_err(|e| Error::io(path, e))?;
        f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
        if magic == [0x1f, 0x8b] {
            let mut dec = flate2::read::GzDecoder::new(BufReader::new(f));
            let header = read_idx_header(&mut dec, path)?;
            let skip = header.header_len;
            let mut a = ArrayFile::new(path, header, Layout::Gzip { skip });
            a.stream = Some((Box::new(dec), 0));
            Ok(a)
        } else {
            let header = read_idx_header(&mut f, path)?;
            let offset = header.header_len;
            let file_len = f.metadata().map_err(|e| Error::io(path, e))?.len();
            let mut a = ArrayFile::new(path, header, Layout::Plain { offset });
            a.check_plain_size(file_len)?;
            a.plain = Some(f);
            Ok(a)
        }
    }

    fn new(path: &Path, h: NpyHeader, layout: Layout) -> Self {
        ArrayFile {
            path: path.to_path_buf(),
            dtype: h.dtype,
            big_endian: h.big_endian,
            shape: h.shape,
            layout,
            plain: None,
            stream: None,
            bytes: Vec::new(),
        }
    }

    fn check_plain_size(&self, file_len: u64) -> Result<()> {
        let Layout::Plain { offset } = self.layout else {
            return Ok(());
        };
        let expected = self.data_bytes();
        let actual = file_len.saturating_sub(offset);
        if actual < expected {
            return Err(Error::Truncated {
                path: self.path.clone(),
                expected,
                actual,
            });
        }
        Ok(())
    }

    fn data_bytes(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64 * self.dtype.size() as u64
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Element type on disk.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Full shape; the first axis is the row axis.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of rows (the first axis; 1 for a 0-d array).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Shape of one row.
    pub fn row_shape(&self) -> &[usize] {
        self.shape.get(1..).unwrap_or(&[])
    }

    fn row_bytes(&self) -> usize {
        self.row_shape().iter().product::<usize>() * self.dtype.size()
    }

    /// Reads the raw bytes of rows `start..start + count` into an internal buffer.
    fn read_bytes(&mut self, start: usize, count: usize) -> Result<&[u8]> {
        if start + count > self.rows() {
            return Err(Error::Mismatch(format!(
                "{}: rows {start}..{} requested, the array has {}",
                self.path.display(),
                start + count,
                self.rows()
            )));
        }
        let row_bytes = self.row_bytes();
        let n = count * row_bytes;
        self.bytes.resize(n, 0);
        let path = self.path.clone();
        let truncated = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::format(
                    &path,
                    format!("truncated: ends before row {}", start + count),
                )
            } else {
                Error::io(&path, e)
            }
        };
        match self.layout {
            Layout::Plain { offset } => {
                let f = self
                    .plain
                    .as_mut()
                    .expect("plain layout keeps its file open");
                f.seek(SeekFrom::Start(offset + (start * row_bytes) as u64))
                    .map_err(|e| Error::io(&path, e))?;
                f.read_exact(&mut self.bytes).map_err(truncated)?;
            }
            Layout::Deflate { .. } | Layout::Gzip { .. } => {
                let rewind = match &self.stream {
                    Some((_, pos)) => *pos > start,
                    None => true,
                };
                if rewind {
                    self.stream = Some((self.reopen_stream()?, 0));
                }
                let (reader, pos) = self.stream.as_mut().expect("stream just set");
                let skip = ((start - *pos) * row_bytes) as u64;
                let skipped = std::io::copy(&mut reader.by_ref().take(skip), &mut std::io::sink())
                    .map_err(truncated)?;
                if skipped != skip {
                    return Err(Error::format(
                        &path,
                        format!("truncated: ends before row {start}"),
                    ));
                }
                reader.read_exact(&mut self.bytes).map_err(truncated)?;
                *pos = start + count;
            }
        }
        Ok(&self.bytes)
    }

    fn reopen_stream(&self) -> Result<Box<dyn Read + Send>> {
        let path = &self.path;
        let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
        let (mut reader, skip): (Box<dyn Read + Send>, u64) = match self.layout {
            Layout::Deflate { offset, skip } => {
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| Error::io(path, e))?;
                (
                    Box::new(flate2::read::DeflateDecoder::new(BufReader::new(f))),
                    skip,
                )
            }
            Layout::Gzip { skip } => (
                Box::new(flate2::read::GzDecoder::new(BufReader::new(f))),
                skip,
            ),
            Layout::Plain { .. } => unreachable!("plain arrays are not streamed"),
        };
        std::io::copy(&mut reader.by_ref().take(skip), &mut std::io::sink())
            .map_err(|e| Error::io(path, e))?;
        Ok(reader)
    }

    /// Appends rows `start..start + count`, converted to `f32`, to `out`.
    pub fn read_f32(&mut self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<()> {
        let (dtype, be) = (self.dtype, self.big_endian);
        let bytes = self.read_bytes(start, count)?;
        dtype.decode_f32(bytes, be, out);
        Ok(())
    }

    /// Reads the whole array as `f64` values.
    pub fn read_all_f64(&mut self) -> Result<Vec<f64>> {
        let (dtype, be) = (self.dtype, self.big_endian);
        let rows = self.rows();
        let mut out = Vec::with_capacity(self.shape.iter().product());
        let bytes = self.read_bytes(0, rows)?;
        dtype.decode_f64(bytes, be, &mut out);
        Ok(out)
    }
}

fn list_arrays(names: &[String]) -> String {
    names
        .iter()
        .map(|n| n.trim_end_matches(".npy"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parsed array header.
#[derive(Debug, Clone)]
struct NpyHeader {
    dtype: DType,
    big_endian: bool,
    shape: Vec<usize>,
    /// Bytes from the start of the file (or member) to the first data byte.
    header_len: u64,
}

fn read_npy_header(r: &mut impl Read, path: &Path) -> Result<NpyHeader> {
    let bad = |m: &str| Error::format(path, format!("not a valid .npy file: {m}"));
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|_| bad("shorter than its magic string"))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY magic string"));
    }
    let (len, prefix) = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(|_| bad("truncated header"))?;
            (u16::from_le_bytes(b) as usize, 10)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|_| bad("truncated header"))?;
            (u32::from_le_bytes(b) as usize, 12)
        }
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    if len > 1 << 20 {
        return Err(bad("header larger than 1 MiB"));
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text)
        .map_err(|_| bad("truncated header"))?;
    let text = String::from_utf8_lossy(&text);
    let descr = dict_value(&text, "descr").ok_or_else(|| bad("no 'descr' in header"))?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(&text, "fortran_order").ok_or_else(|| bad("no 'fortran_order'"))?;
    if fortran.trim() == "True" {
        return Err(Error::format(
            path,
            "array is stored in Fortran order; save it with np.ascontiguousarray first",
        ));
    }
    let shape_text = dict_value(&text, "shape").ok_or_else(|| bad("no 'shape' in header"))?;
    let shape = shape_text
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad(&format!("cannot parse shape {shape_text}")))?;
    let (big_endian, code) = match descr.as_bytes().first() {
        Some(b'>') => (true, &descr[1..]),
        Some(b'<' | b'|' | b'=') => (false, &descr[1..]),
        _ => (false, descr),
    };
    let dtype = match code {
        "b1" => DType::Bool,
        "u1" => DType::U8,
        "i1" => DType::I8,
        "u2" => DType::U16,
        "i2" => DType::I16,
        "u4" => DType::U32,
        "i4" => DType::I32,
        "u8" => DType::U64,
        "i8" => DType::I64,
        "f2" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        other => {
            return Err(Error::format(
                path,
                format!("unsupported dtype '{other}' (descr {descr})"),
            ))
        }
    };
    Ok(NpyHeader {
        dtype,
        big_endian,
        shape,
        header_len: (prefix + len) as u64,
    })
}

/// The text of `key`'s value in a Python dict literal (values here hold no nested braces, but
/// `shape` holds a tuple with commas).
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text
        .find(&format!("'{key}'"))
        .or_else(|| text.find(&format!("\"{key}\"")))?;
    let rest = &text[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(&rest[..end])
}

fn read_idx_header(r: &mut impl Read, path: &Path) -> Result<NpyHeader> {
    let bad = |m: String| Error::format(path, format!("not a valid IDX file: {m}"));
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)
        .map_err(|_| bad("shorter than its 4-byte magic".into()))?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(bad(format!(
            "magic {magic:02x?} does not start with two zero bytes"
        )));
    }
    let dtype = match magic[2] {
        0x08 => DType::U8,
        0x09 => DType::I8,
        0x0B => DType::I16,
        0x0C => DType::I32,
        0x0D => DType::F32,
        0x0E => DType::F64,
        t => return Err(bad(format!("unknown element type 0x{t:02x}"))),
    };
    let ndim = magic[3] as usize;
    if ndim == 0 {
        return Err(bad("zero dimensions".into()));
    }
    let mut shape = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)
            .map_err(|_| bad("truncated header".into()))?;
        shape.push(u32::from_be_bytes(b) as usize);
    }
    Ok(NpyHeader {
        dtype,
        big_endian: true,
        shape,
        header_len: 4 + 4 * ndim as u64,
    })
}

/// Writes a little-endian `f32` `.npy` file (used for gradient maps and by tests).
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write_npy(
        path,
        "<f4",
        shape,
        &data
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

/// Writes a little-endian `i64` `.npy` file.
pub fn write_npy_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    write_npy(
        path,
        "<i8",
        shape,
        &data
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let shape_text = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut f = std::io::BufWriter::new(File::create(path).map_err(|e| Error::io(path, e))?);
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    f.write_all(&out)
        .and_then(|_| f.write_all(bytes))
        .and_then(|_| f.flush())
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn npy_roundtrip_and_row_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32).collect();
        write_npy_f32(&p, &[4, 2, 3], &data).unwrap();
        let mut a = ArrayFile::open_npy(&p).unwrap();
        assert_eq!(a.shape(), &[4, 2, 3]);
        assert_eq!(a.row_shape(), &[2, 3]);
        let mut out = Vec::new();
        a.read_f32(2, 2, &mut out).unwrap();
        assert_eq!(out, data[12..].to_vec());
        out.clear();
        a.read_f32(0, 1, &mut out).unwrap();
        assert_eq!(out, data[..6].to_vec());
        assert!(a.read_f32(3, 2, &mut out).is_err());
    }

    #[test]
    fn truncated_npy_is_reported_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_npy_f32(&p, &[10, 4], &[1.0; 40]).unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 7).unwrap();
        let err = ArrayFile::open_npy(&p).unwrap_err().to_string();
        assert!(err.contains("truncated") && err.contains("a.npy"), "{err}");
    }

    #[test]
    fn garbage_is_not_an_npy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        std::fs::write(&p, b"hello world, not numpy").unwrap();
        let err = ArrayFile::open_npy(&p).unwrap_err().to_string();
        assert!(err.contains("not a valid .npy"), "{err}");
    }

    #[test]
    fn idx_plain_and_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = vec![0, 0, 0x08, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2];
        bytes.extend(0u8..12);
        let p = dir.path().join("images-idx3-ubyte");
        std::fs::write(&p, &bytes).unwrap();
        let gz = dir.path().join("images-idx3-ubyte.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), Default::default());
        enc.write_all(&bytes).unwrap();
        enc.finish().unwrap();
        for path in [&p, &gz] {
            let mut a = ArrayFile::open_idx(path).unwrap();
            assert_eq!(a.shape(), &[3, 2, 2]);
            let mut out = Vec::new();
            a.read_f32(1, 2, &mut out).unwrap();
            assert_eq!(out, (4..12).map(|v| v as f32).collect::<Vec<_>>());
            out.clear();
            a.read_f32(0, 1, &mut out).unwrap(); // going backwards restarts the stream
            assert_eq!(out, vec![0.0, 1.0, 2.0, 3.0]);
        }
    }

    #[test]
    fn header_dict_parsing() {
        let t = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
        assert_eq!(dict_value(t, "descr"), Some("'<f4'"));
        assert_eq!(dict_value(t, "shape"), Some("(3, 4)"));
        assert_eq!(dict_value(t, "fortran_order"), Some("False"));
    }
}
