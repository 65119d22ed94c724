//! PNG (8-bit RGB or RGBA, zlib via flate2) for the report's thumbnails and heat maps.

use std::io::Write;

use base64::Engine as _;

pub(crate) fn png(width: usize, height: usize, channels: usize, pixels: &[u8]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(height as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, if channels == 4 { 6 } else { 2 }, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    for y in 0..height {
        let line = &pixels[y * width * channels..(y + 1) * width * channels];
        z.write_all(&[0]).expect("in memory");
        z.write_all(line).expect("in memory");
    }
    chunk(&mut out, b"IDAT", &z.finish().expect("in memory"));
    chunk(&mut out, b"IEND", &[]);
    out
}

pub(crate) fn data_uri(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

/// `[H,W]`, `[C,H,W]` or `[H,W,C]` → (h, w, c, value at (channel, y, x)).
pub(crate) fn image_dims(shape: &[usize]) -> Option<(usize, usize, usize, bool)> {
    match *shape {
        [h, w] => Some((h, w, 1, true)),
        [c, h, w] if c == 1 || c == 3 => Some((h, w, c, true)),
        [h, w, c] if c == 1 || c == 3 => Some((h, w, c, false)),
        _ => None,
    }
}

fn at(data: &[f32], dims: (usize, usize, usize, bool), k: usize, y: usize, x: usize) -> f32 {
    let (h, w, c, chw) = dims;
    if chw {
        data[(k * h + y) * w + x]
    } else {
        data[(y * w + x) * c + k]
    }
}

pub(crate) fn input_png(data: &[f32], dims: (usize, usize, usize, bool), gray: bool) -> Vec<u8> {
    let (h, w, c, _) = dims;
    let (lo, hi) = data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, u), &v| {
            (l.min(v), u.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut px = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            let rgb: Vec<f32> = (0..3)
                .map(|k| (at(data, dims, if c == 3 { k } else { 0 }, y, x) - lo) / span)
                .collect();
            let g = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
            for v in rgb {
                px.push((255.0 * if gray { g } else { v }).round() as u8);
            }
        }
    }
    png(w, h, 3, &px)
}

fn hot(t: f32) -> [u8; 3] {
    let c = |v: f32| (255.0 * v.clamp(0.0, 1.0)).round() as u8;
    [c(3.0 * t), c(3.0 * t - 1.0), c(3.0 * t - 2.0)]
}

pub(crate) fn heat_png(data: &[f32], dims: (usize, usize, usize, bool)) -> Vec<u8> {
    let (h, w, c, _) = dims;
    let mut v = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            v[y * w + x] = (0..c).map(|k| at(data, dims, k, y, x).abs()).sum::<f32>() / c as f32;
        }
    }
    let hi = v.iter().copied().fold(0.0f32, f32::max);
    let mut px = Vec::with_capacity(h * w * 4);
    for &a in &v {
        let t = if hi > 0.0 { a / hi } else { 0.0 };
        px.extend_from_slice(&hot(t));
        px.push((255.0 * t.sqrt()).round() as u8);
    }
    png(w, h, 4, &px)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_is_well_formed() {
        let p = png(2, 1, 3, &[255, 0, 0, 0, 0, 255]);
        assert!(p.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(&p[12..16], b"IHDR");
        assert!(p.ends_with(&[0xAE, 0x42, 0x60, 0x82]), "IEND CRC");
    }
}
