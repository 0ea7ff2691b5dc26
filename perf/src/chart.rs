//! The PNG chart: per case, ethershelf/vblade and ethershelf/lower-ceiling as horizontal bars.

use plotters::prelude::*;

/// One row of the chart.
pub struct Bar {
    /// Case label.
    pub label: String,
    /// ethershelf / vblade (medians).
    pub vs_vblade: f64,
    /// ethershelf / lower ceiling.
    pub vs_ceiling: f64,
}

/// Draws `bars` into `path`.
pub fn draw(path: &std::path::Path, title: &str, bars: &[Bar]) -> Result<(), String> {
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .map_err(|e| format!("font (apt-get install fonts-dejavu-core): {e}"))?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| "cannot load DejaVuSans.ttf".to_string())?;
    let rows = bars.len() * 2;
    let height = (140 + rows * 26) as u32;
    let root = BitMapBackend::new(path, (1400, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let xmax = bars
        .iter()
        .flat_map(|b| [b.vs_vblade, b.vs_ceiling])
        .fold(1.2f64, f64::max)
        * 1.1;
    let labels: Vec<String> = bars
        .iter()
        .flat_map(|b| {
            [
                format!("{}  vs vblade", b.label),
                format!("{}  vs ceiling", b.label),
            ]
        })
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(430)
        .build_cartesian_2d(0f64..xmax, (0..rows).into_segmented())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .y_labels(rows)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ratio (1.0 = parity)")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    let colors = [RGBColor(31, 119, 180), RGBColor(255, 127, 14)];
    chart
        .draw_series(bars.iter().enumerate().flat_map(|(i, b)| {
            [
                (2 * i, b.vs_vblade, colors[0]),
                (2 * i + 1, b.vs_ceiling, colors[1]),
            ]
            .into_iter()
            .map(|(row, v, c)| {
                Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(row)),
                        (v, SegmentValue::Exact(row + 1)),
                    ],
                    c.filled(),
                )
            })
        }))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![
                (1.0, SegmentValue::Exact(0)),
                (1.0, SegmentValue::Exact(rows)),
            ],
            BLACK.stroke_width(2),
        )))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![
                (0.8, SegmentValue::Exact(0)),
                (0.8, SegmentValue::Exact(rows)),
            ],
            RGBColor(150, 150, 150).stroke_width(1),
        )))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
