//! The report page: HTML with inline CSS and inline SVG charts, nothing
//! fetched. Every value is escaped.

use std::fmt::Write as _;

use super::Report;
use crate::record::RunRecord;

const STYLE: &str = "
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2328;max-width:1000px;margin:2rem auto;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
h3{font-size:1rem;margin-bottom:.4rem}
.meta{color:#57606a;margin:0}.meta b{color:#1f2328;font-weight:600}
.badge{display:inline-block;padding:.1rem .6rem;border-radius:1rem;color:#fff;font-size:.85rem;vertical-align:middle}
.succeeded{background:#1a7f37;fill:#2da44e}.failed{background:#cf222e;fill:#cf222e}.interrupted{background:#9a6700;fill:#bf8700}.running{background:#0969da;fill:#0969da}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left}td.num,th.num{text-align:right}th{background:#f6f8fa}
svg{font:12px system-ui,sans-serif;display:block;margin:.5rem 0}
svg .label{fill:#1f2328}svg .muted{fill:#57606a}svg .axis{stroke:#d0d7de}
.read{fill:#0969da}.loaded{fill:#2da44e}.rejected{fill:#cf222e}.top{fill:#8250df}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:-.1rem}
.legend .read{background:#0969da}.legend .loaded{background:#2da44e}.legend .rejected{background:#cf222e}
.error{color:#cf222e;white-space:pre-wrap}.note{color:#57606a}
.reason-tables{display:flex;gap:2rem;flex-wrap:wrap;align-items:flex-start}
";

/// The whole page.
pub fn html(report: &Report) -> String {
    let run = &report.run;
    let mut out = String::with_capacity(32 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>infra run {id}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        id = esc(&run.id)
    );
    header(&mut out, run);
    timeline(&mut out, run);
    rows(&mut out, report);
    metric(&mut out, report);
    links(&mut out, &report.links);
    let _ = write!(
        out,
        "<footer><p class=\"note\">Written by infra {}. Self-contained: no scripts, fonts or network.</p></footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    out
}

fn header(out: &mut String, run: &RunRecord) {
    let total: f64 = run.steps.iter().filter_map(|s| s.seconds).sum();
    let _ = write!(
        out,
        "<header>\n<h1>Run {id} <span class=\"badge {o}\" id=\"outcome\">{o}</span></h1>\n<p class=\"meta\">target <b>{target}</b> · started <b>{start}</b> · {steps} step{s} · <b>{total:.1} s</b> in steps</p>\n",
        id = esc(&run.id),
        o = run.outcome,
        target = esc(&run.target),
        start = run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        steps = run.steps.len(),
        s = if run.steps.len() == 1 { "" } else { "s" },
    );
    for step in run.steps.iter().filter(|s| s.error.is_some()) {
        let _ = writeln!(
            out,
            "<p class=\"error\">step {} {}: {}</p>",
            esc(&step.step.to_string()),
            step.outcome,
            esc(step.error.as_deref().unwrap_or_default())
        );
    }
    out.push_str("</header>\n");
}

/// A Gantt chart: one bar per step, placed by its start and length.
fn timeline(out: &mut String, run: &RunRecord) {
    out.push_str("<section id=\"timeline\">\n<h2>Timeline</h2>\n");
    if run.steps.is_empty() {
        out.push_str("<p class=\"note\">No step has run.</p>\n</section>\n");
        return;
    }
    let start = run
        .steps
        .iter()
        .map(|s| s.started_at)
        .min()
        .expect("at least one step");
    let end = run
        .steps
        .iter()
        .map(|s| s.finished_at.unwrap_or(s.started_at))
        .max()
        .expect("at least one step");
    let span = (end - start).as_seconds_f64().max(0.001);
    let (label_w, chart_w, row_h) = (170.0, 640.0, 30.0);
    let height = row_h * run.steps.len() as f64 + 30.0;
    let width = label_w + chart_w + 90.0;
    let _ = writeln!(
        out,
        "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"timeline of the run's steps\">"
    );
    for tick in 0..=4 {
        let x = label_w + chart_w * f64::from(tick) / 4.0;
        let secs = span * f64::from(tick) / 4.0;
        let _ = writeln!(
            out,
            "<line class=\"axis\" x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{y:.1}\"/><text class=\"muted\" x=\"{x:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{secs:.1} s</text>",
            y = height - 22.0,
            ty = height - 6.0
        );
    }
    for (i, step) in run.steps.iter().enumerate() {
        let y = row_h * i as f64;
        let offset = (step.started_at - start).as_seconds_f64();
        let length = step
            .seconds
            .unwrap_or_else(|| (end - step.started_at).as_seconds_f64());
        let x = label_w + chart_w * offset / span;
        let w = (chart_w * length / span).max(2.0);
        let _ = writeln!(
            out,
            "<g class=\"step\" data-step=\"{name}\"><text class=\"label\" x=\"0\" y=\"{ty:.1}\">{label}</text><rect class=\"bar {o}\" data-step=\"{name}\" x=\"{x:.1}\" y=\"{by:.1}\" width=\"{w:.1}\" height=\"{bh:.1}\" rx=\"3\"><title>{label}: {o}, {length:.1} s</title></rect><text class=\"muted\" x=\"{tx:.1}\" y=\"{ty:.1}\">{length:.1} s</text></g>",
            name = step.step.name(),
            label = esc(&step.step.to_string()),
            o = step.outcome,
            ty = y + 19.0,
            by = y + 6.0,
            bh = row_h - 10.0,
            tx = x + w + 6.0,
        );
    }
    out.push_str("</svg>\n</section>\n");
}

/// Rows read, loaded and rejected per step, then each step's reasons.
fn rows(out: &mut String, report: &Report) {
    let run = &report.run;
    out.push_str("<section id=\"rows\">\n<h2>Rows per step</h2>\n<p class=\"legend\"><span class=\"read\"></span>read<span class=\"loaded\"></span>loaded<span class=\"rejected\"></span>rejected</p>\n");
    let counted: Vec<_> = run
        .steps
        .iter()
        .filter_map(|s| Some((s.step, s.counts?)))
        .collect();
    if counted.is_empty() {
        out.push_str("<p class=\"note\">No step has finished.</p>\n");
    } else {
        let max = counted
            .iter()
            .map(|(_, c)| c.rows_in.max(c.rows_out))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let (label_w, chart_w, bar_h, group_h) = (170.0, 560.0, 12.0, 50.0);
        let height = group_h * counted.len() as f64;
        let width = label_w + chart_w + 110.0;
        let _ = writeln!(
            out,
            "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"rows read, loaded and rejected per step\">"
        );
        for (i, (step, counts)) in counted.iter().enumerate() {
            let y = group_h * i as f64;
            let _ = write!(
                out,
                "<g class=\"rows\" data-step=\"{}\"><text class=\"label\" x=\"0\" y=\"{:.1}\">{}</text>",
                step.name(),
                y + 24.0,
                esc(&step.to_string())
            );
            for (j, (class, n)) in [
                ("read", counts.rows_in),
                ("loaded", counts.rows_out),
                ("rejected", counts.rows_rejected),
            ]
            .into_iter()
            .enumerate()
            {
                let by = y + 4.0 + bar_h * j as f64;
                // A non-zero count stays visible next to counts 10,000 times larger.
                let w = if n == 0 {
                    0.0
                } else {
                    (chart_w * n as f64 / max).max(2.0)
                };
                let _ = write!(
                    out,
                    "<rect class=\"{class}\" x=\"{label_w}\" y=\"{by:.1}\" width=\"{w:.1}\" height=\"{h:.1}\"><title>{class}: {n}</title></rect><text class=\"muted\" x=\"{tx:.1}\" y=\"{ty:.1}\">{num}</text>",
                    h = bar_h - 2.0,
                    tx = label_w + w + 5.0,
                    ty = by + bar_h - 3.0,
                    num = thousands(n),
                );
            }
            out.push_str("</g>\n");
        }
        out.push_str("</svg>\n");
    }
    out.push_str("<h3>Rejection reasons</h3>\n<div class=\"reason-tables\">\n");
    if report.rejects.is_empty() {
        out.push_str("<p class=\"note\">No step that rejects rows has run.</p>\n");
    }
    for (step, reasons) in &report.rejects {
        let _ = write!(
            out,
            "<table class=\"reasons\" data-step=\"{}\"><caption>{}</caption><thead><tr><th>reason</th><th class=\"num\">rows</th></tr></thead><tbody>",
            step.name(),
            esc(&step.to_string())
        );
        if reasons.is_empty() {
            out.push_str("<tr><td colspan=\"2\" class=\"note\">none rejected</td></tr>");
        }
        for (reason, n) in reasons {
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(reason),
                thousands(*n)
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</div>\n</section>\n");
}

/// The top customers as a chart, then the first rows of the metric.
fn metric(out: &mut String, report: &Report) {
    let _ = write!(
        out,
        "<section id=\"metric\">\n<h2>{}</h2>\n",
        esc(&report.table)
    );
    let metric = match &report.metric {
        Ok(metric) => metric,
        Err(why) => {
            let _ = write!(
                out,
                "<p class=\"note\">The warehouse table could not be read: {}</p>\n</section>\n",
                esc(why)
            );
            return;
        }
    };
    let _ = writeln!(
        out,
        "<h3>Top {} customers by amount spent</h3>",
        metric.top.len()
    );
    let max = metric
        .top
        .iter()
        .map(|(_, a)| a.abs())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let (label_w, chart_w, row_h) = (90.0, 560.0, 22.0);
    let height = row_h * metric.top.len() as f64 + 4.0;
    let width = label_w + chart_w + 120.0;
    let _ = writeln!(
        out,
        "<svg id=\"top-customers\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"top customers by amount spent\">"
    );
    for (i, (id, amount)) in metric.top.iter().enumerate() {
        let y = row_h * i as f64;
        let w = (chart_w * amount.abs() / max).max(1.0);
        let _ = writeln!(
            out,
            "<g class=\"customer\"><text class=\"label\" x=\"0\" y=\"{ty:.1}\">{id}</text><rect class=\"top\" x=\"{label_w}\" y=\"{by:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"2\"/><text class=\"muted\" x=\"{tx:.1}\" y=\"{ty:.1}\">{amount:.3}</text></g>",
            id = esc(id),
            ty = y + 15.0,
            by = y + 3.0,
            h = row_h - 6.0,
            tx = label_w + w + 5.0,
        );
    }
    out.push_str("</svg>\n");
    let _ = write!(
        out,
        "<h3>First {} rows, by customer id</h3>\n<table id=\"metric-rows\"><thead><tr>",
        metric.rows.len()
    );
    for column in &metric.columns {
        let _ = write!(out, "<th>{}</th>", esc(column));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in &metric.rows {
        out.push_str("<tr>");
        for value in row {
            let class = if value.parse::<f64>().is_ok() {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{}</td>", esc(value));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn links(out: &mut String, links: &[(String, String)]) {
    if links.is_empty() {
        return;
    }
    out.push_str("<section id=\"console\">\n<h2>Cloud Console</h2>\n<ul>\n");
    for (label, url) in links {
        let _ = writeln!(out, "<li><a href=\"{}\">{}</a></li>", esc(url), esc(label));
    }
    out.push_str("</ul>\n</section>\n");
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `541909` → `541,909`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::plan::Step;
    use crate::record::Counts;
    use crate::report::Metric;

    fn report() -> Report {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let mut run = RunRecord::new("local", t0);
        for (i, step) in [Step::LoadPurchases, Step::DumpPurchases]
            .into_iter()
            .enumerate()
        {
            let at = t0 + chrono::Duration::seconds(i as i64 * 3);
            run.start_step(step, at);
            run.finish_step(
                step,
                Ok(Counts {
                    rows_in: 541_909,
                    rows_out: 541_897,
                    rows_rejected: 12,
                }),
                at + chrono::Duration::seconds(2),
            );
        }
        run.finish(t0 + chrono::Duration::seconds(6));
        Report {
            run,
            table: "bootcamp.user_behavior_metric".into(),
            rejects: [(
                Step::LoadPurchases,
                vec![("Quantity is not a 32-bit integer".to_owned(), 7)],
            )]
            .into(),
            metric: Ok(Metric {
                columns: vec!["customer_id".into(), "amount_spent".into()],
                rows: vec![vec!["12346".into(), "<script>".into()]],
                top: vec![("12346".into(), 77183.6)],
            }),
            links: Vec::new(),
        }
    }

    #[test]
    fn the_page_loads_nothing_and_escapes_every_value() {
        let page = html(&report());
        for external in ["<script", "src=", "@import", "url(", "<link", "http"] {
            assert!(!page.contains(external), "the page contains {external}");
        }
        assert!(page.contains("&lt;script&gt;"));
        assert_eq!(page.matches("<rect class=\"bar ").count(), 2);
        assert!(page.contains("<td>Quantity is not a 32-bit integer</td><td class=\"num\">7</td>"));
        assert!(page.contains(">541,909<"));
    }

    /// Regression (issue 21): the chart showed 77183.60 where the table
    /// shows the warehouse's 3 decimals.
    #[test]
    fn the_chart_shows_amounts_with_the_tables_3_decimals() {
        let mut report = report();
        if let Ok(metric) = &mut report.metric {
            metric.top = vec![("12346".into(), 77183.605)];
        }
        let page = html(&report);
        assert!(page.contains(">77183.605</text>"), "{page}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(541_909), "541,909");
    }
}
