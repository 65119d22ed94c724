//! Element types of array files and their conversion to `f32` / integers.

/// Element type of an array on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// Boolean, one byte.
    Bool,
    /// Unsigned 8-bit.
    U8,
    /// Signed 8-bit.
    I8,
    /// Unsigned 16-bit.
    U16,
    /// Signed 16-bit.
    I16,
    /// Unsigned 32-bit.
    U32,
    /// Signed 32-bit.
    I32,
    /// Unsigned 64-bit.
    U64,
    /// Signed 64-bit.
    I64,
    /// IEEE half precision.
    F16,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 | DType::F16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
        }
    }

    /// True for floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::F32 | DType::F64)
    }

    /// numpy's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::U16 => "uint16",
            DType::I16 => "int16",
            DType::U32 => "uint32",
            DType::I32 => "int32",
            DType::U64 => "uint64",
            DType::I64 => "int64",
            DType::F16 => "float16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// Decodes `bytes` (a whole number of elements) into `f64` values.
    pub(crate) fn decode_f64(self, bytes: &[u8], big_endian: bool, out: &mut Vec<f64>) {
        macro_rules! conv {
            ($t:ty, $n:expr) => {
                out.extend(bytes.chunks_exact($n).map(|c| {
                    let a: [u8; $n] = c.try_into().expect("chunk size");
                    (if big_endian {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }) as f64
                }))
            };
        }
        match self {
            DType::Bool | DType::U8 => out.extend(bytes.iter().map(|&b| f64::from(b))),
            DType::I8 => out.extend(bytes.iter().map(|&b| f64::from(b as i8))),
            DType::U16 => conv!(u16, 2),
            DType::I16 => conv!(i16, 2),
            DType::U32 => conv!(u32, 4),
            DType::I32 => conv!(i32, 4),
            DType::U64 => conv!(u64, 8),
            DType::I64 => conv!(i64, 8),
            DType::F16 => out.extend(bytes.chunks_exact(2).map(|c| {
                let a = [c[0], c[1]];
                f16_to_f64(if big_endian {
                    u16::from_be_bytes(a)
                } else {
                    u16::from_le_bytes(a)
                })
            })),
            DType::F32 => conv!(f32, 4),
            DType::F64 => conv!(f64, 8),
        }
    }

    /// Decodes `bytes` into `f32` values (the engine's working type).
    pub(crate) fn decode_f32(self, bytes: &[u8], big_endian: bool, out: &mut Vec<f32>) {
        match (self, big_endian) {
            (DType::F32, false) => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("chunk size"))),
            ),
            (DType::U8, _) => out.extend(bytes.iter().map(|&b| f32::from(b))),
            _ => {
                let mut tmp = Vec::with_capacity(bytes.len() / self.size());
                self.decode_f64(bytes, big_endian, &mut tmp);
                out.extend(tmp.into_iter().map(|v| v as f32));
            }
        }
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_endiannesses() {
        let mut out = Vec::new();
        DType::I16.decode_f64(&[0xff, 0xfe], true, &mut out);
        DType::I16.decode_f64(&[0xfe, 0xff], false, &mut out);
        DType::F16.decode_f64(&[0x00, 0x3c], false, &mut out); // 1.0
        DType::F16.decode_f64(&[0x00, 0xc0], false, &mut out); // -2.0
        assert_eq!(out, vec![-2.0, -2.0, 1.0, -2.0]);
    }
}
