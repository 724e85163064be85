//! The SVG chart: six panels of horizontal bars, one bar per contender.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::plan::LARGE;
use crate::report::{Summary, sig};
use crate::transport::Contender;

struct Panel {
    title: &'static str,
    key: String,
    metric: &'static str,
    scale: f64,
    log: bool,
}

fn color(c: Contender) -> RGBColor {
    if c.is_shm_queue() {
        RGBColor(0x1f, 0x77, 0xb4)
    } else if matches!(c, Contender::SpinRing | Contender::SpinRingInPlace) {
        RGBColor(0xd6, 0x27, 0x28)
    } else if c == Contender::Crossbeam {
        RGBColor(0x2c, 0xa0, 0x2c)
    } else {
        RGBColor(0x7f, 0x7f, 0x7f)
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Error = Box<dyn std::error::Error>;

fn panel(area: &Area<'_>, p: &Panel, s: &Summary, contenders: &[Contender]) -> Result<(), Error> {
    let bars: Vec<(Contender, f64)> = contenders
        .iter()
        .filter_map(|&c| {
            let v = s.get(&p.key)?.get(&c)?.values.get(p.metric)? * p.scale;
            (v > 0.0).then_some((c, v))
        })
        .collect();
    let n = bars.len().max(1);
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9);
    let min = bars.iter().map(|b| b.1).fold(f64::INFINITY, f64::min);
    let names: Vec<&str> = bars.iter().map(|b| b.0.name()).collect();
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => names.get(*i).copied().unwrap_or("").to_string(),
        _ => String::new(),
    };
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(p.title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(130);
    let bar = |i: usize, c: Contender, from: f64, v: f64| {
        let mut r = Rectangle::new(
            [
                (from, SegmentValue::Exact(i)),
                (v, SegmentValue::Exact(i + 1)),
            ],
            color(c).filled(),
        );
        r.set_margin(3, 3, 0, 0);
        r
    };
    let value = |i: usize, v: f64| {
        Text::new(
            format!(" {}", sig(v)),
            (v, SegmentValue::CenterOf(i)),
            TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center)),
        )
    };
    if p.log {
        let lo = (min.min(max) / 2.0).max(1e-3);
        let mut chart =
            builder.build_cartesian_2d((lo..max * 4.0).log_scale(), (0..n).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&label)
            .x_label_formatter(&|v| sig(*v))
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, &(c, v))| bar(i, c, lo, v)))?;
        chart.draw_series(bars.iter().enumerate().map(|(i, &(_, v))| value(i, v)))?;
    } else {
        let mut chart = builder.build_cartesian_2d(0.0..max * 1.25, (0..n).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&label)
            .x_label_formatter(&|v| sig(*v))
            .draw()?;
        chart.draw_series(
            bars.iter()
                .enumerate()
                .map(|(i, &(c, v))| bar(i, c, 0.0, v)),
        )?;
        chart.draw_series(bars.iter().enumerate().map(|(i, &(_, v))| value(i, v)))?;
    }
    Ok(())
}

/// Writes the chart of `s` to `path`.
pub fn write(path: &Path, s: &Summary, contenders: &[Contender], title: &str) -> Result<(), Error> {
    let panels = [
        Panel {
            title: "64 B ping-pong round trip, median µs (log)",
            key: "pingpong-64".into(),
            metric: "median_us",
            scale: 1.0,
            log: true,
        },
        Panel {
            title: "wake-up latency of a sleeping receiver, median µs (log)",
            key: "wake".into(),
            metric: "median_us",
            scale: 1.0,
            log: true,
        },
        Panel {
            title: "64 B streaming, M msg/s",
            key: "stream-64".into(),
            metric: "msgs_per_s",
            scale: 1e-6,
            log: false,
        },
        Panel {
            title: "4 KiB streaming, M msg/s",
            key: "stream-4096".into(),
            metric: "msgs_per_s",
            scale: 1e-6,
            log: false,
        },
        Panel {
            title: "1 MiB streaming, MB/s",
            key: format!("stream-{LARGE}"),
            metric: "mb_per_s",
            scale: 1.0,
            log: false,
        },
        Panel {
            title: "receiver blocked 2 s: CPU, % of a core (log)",
            key: "idle".into(),
            metric: "cpu_pct",
            scale: 1.0,
            log: true,
        },
    ];
    let root = SVGBackend::new(path, (1200, 1150)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let areas = root.split_evenly((3, 2));
    for (area, p) in areas.iter().zip(&panels) {
        panel(area, p, s, contenders)?;
    }
    root.present()?;
    Ok(())
}
