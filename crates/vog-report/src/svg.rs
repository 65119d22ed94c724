//! A dependency-free SVG scatter plot: points coloured by a score, a boundary line, a colour bar.

use std::fmt::Write as _;
use std::path::Path;

use crate::html::escape;
use crate::{Error, Result};

/// One panel of a figure.
pub struct Panel {
    /// Its title.
    pub title: String,
    /// The points, in data coordinates.
    pub points: Vec<(f64, f64)>,
    /// Each point's class (its marker).
    pub classes: Vec<u32>,
    /// Each point's score (its colour).
    pub values: Vec<f64>,
}

const W: f64 = 460.0;
const H: f64 = 420.0;
const PAD: f64 = 46.0;

/// Viridis, sampled at 5 stops and interpolated linearly.
fn colour(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    } * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// Writes panels side by side, sharing axes; `boundary` is a point and a direction.
pub fn write_scatter(
    path: &Path,
    panels: &[Panel],
    boundary: ((f64, f64), (f64, f64)),
    label: &str,
) -> Result<()> {
    let all = panels.iter().flat_map(|p| &p.points);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    // Equal units on both axes, so that perpendicular looks perpendicular.
    let (mx, my) = ((x1 - x0) * 0.05 + 1e-9, (y1 - y0) * 0.05 + 1e-9);
    let (mut x0, mut x1, mut y0, mut y1) = (x0 - mx, x1 + mx, y0 - my, y1 + my);
    let (pw, ph) = (W - 2.0 * PAD, H - 2.0 * PAD);
    let unit = ((x1 - x0) / pw).max((y1 - y0) / ph);
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    (x0, x1) = (cx - unit * pw / 2.0, cx + unit * pw / 2.0);
    (y0, y1) = (cy - unit * ph / 2.0, cy + unit * ph / 2.0);
    let sx = |x: f64| PAD + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| H - PAD - (y - y0) / (y1 - y0) * ph;
    let total_w = W * panels.len() as f64 + 90.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{H}" viewBox="0 0 {total_w} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    // One colour scale for all panels: 2nd to 98th percentile of all values.
    let mut vals: Vec<f64> = panels
        .iter()
        .flat_map(|p| p.values.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    vals.sort_by(f64::total_cmp);
    let q = |f: f64| {
        vals.get(((vals.len() as f64 - 1.0) * f).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let (lo, hi) = (q(0.02), q(0.98));
    let norm = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
    for (k, p) in panels.iter().enumerate() {
        let ox = W * k as f64;
        let _ = writeln!(s, r#"<g transform="translate({ox},0)">"#);
        let _ = writeln!(
            s,
            r##"<rect x="{PAD}" y="{PAD}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
            W - 2.0 * PAD,
            H - 2.0 * PAD
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="14">{}</text>"#,
            W / 2.0,
            PAD - 14.0,
            escape(&p.title)
        );
        for i in 0..=4 {
            let fx = x0 + (x1 - x0) * i as f64 / 4.0;
            let fy = y0 + (y1 - y0) * i as f64 / 4.0;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{fx:.1}</text>"#,
                sx(fx),
                H - PAD + 16.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{fy:.1}</text>"#,
                PAD - 4.0,
                sy(fy) + 4.0
            );
        }
        // Clip the boundary line to the plot box.
        let ((bx, by), (dx, dy)) = boundary;
        let n = (dx * dx + dy * dy).sqrt();
        let span = ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt();
        let (ax, ay) = (bx - dx / n * span, by - dy / n * span);
        let (cx, cy) = (bx + dx / n * span, by + dy / n * span);
        let _ = writeln!(
            s,
            r#"<clipPath id="clip{k}"><rect x="{PAD}" y="{PAD}" width="{}" height="{}"/></clipPath>"#,
            W - 2.0 * PAD,
            H - 2.0 * PAD
        );
        let _ = writeln!(
            s,
            r##"<line clip-path="url(#clip{k})" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 4"/>"##,
            sx(ax),
            sy(ay),
            sx(cx),
            sy(cy)
        );
        let mut order: Vec<usize> = (0..p.points.len()).collect();
        order.sort_by(|&a, &b| p.values[a].total_cmp(&p.values[b])); // hardest drawn last, on top
        for i in order {
            let (x, y) = p.points[i];
            let c = colour(norm(p.values[i]));
            if p.classes[i] == 0 {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{c}" stroke="#333" stroke-width="0.5"/>"##,
                    sx(x),
                    sy(y)
                );
            } else {
                let _ = writeln!(
                    s,
                    r##"<rect x="{:.1}" y="{:.1}" width="7" height="7" fill="{c}" stroke="#333" stroke-width="0.5"/>"##,
                    sx(x) - 3.5,
                    sy(y) - 3.5
                );
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="11">○ class 0   □ class 1   - - Bayes boundary</text>"#,
            PAD,
            H - 8.0
        );
        let _ = writeln!(s, "</g>");
    }
    // Colour bar.
    let bx = W * panels.len() as f64 + 20.0;
    for i in 0..100 {
        let t = 1.0 - i as f64 / 99.0;
        let _ = writeln!(
            s,
            r#"<rect x="{bx}" y="{:.1}" width="16" height="3.3" fill="{}"/>"#,
            PAD + i as f64 * 3.3,
            colour(t)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}">{hi:.2}</text>"#,
        bx + 20.0,
        PAD + 8.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}">{lo:.2}</text>"#,
        bx + 20.0,
        PAD + 330.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        bx - 6.0,
        PAD + 165.0,
        escape(label)
    );
    s.push_str("</svg>\n");
    std::fs::write(path, s).map_err(|e| Error::io(path, e))
}
