//! A timeline picture of one failing simulation run, as a self-contained HTML page.
//!
//! [`Timeline::to_html`] renders one page with no scripts and no external resources: a heading,
//! the notes (replay command, violated checker...), a legend, one inline SVG and a table.
//!
//! How to read the picture:
//! - Time runs left to right, in seconds from the start of the run; the axis is drawn above and
//!   below the lanes.
//! - Each lane is one row: a node such as "order-1" or "orders-db", or the pseudo lane
//!   "network" for region cuts. Its name is at the left.
//! - A fault is a translucent red bar over its lane from the moment it began to the moment it
//!   ended (or to the end of the run), with its label at the top of the row.
//! - A mark is a small shape on the lane's centre line: a filled circle for a status change of
//!   the violating order, a square for a call to an external provider, a diamond for a Kafka
//!   event, a triangle for anything else. Its label stands beside it, above or below the line
//!   so that neighbouring labels do not overlap; a label longer than 28 characters is cut, and
//!   where a lane is too crowded a label is left out of the picture.
//! - Hovering a mark or a bar shows its time and whole text (an SVG `<title>`).
//! - The dashed vertical line is the end of the fault phase; the heal phase follows it.
//!
//! Below the picture, every mark is listed in time order, whole, so the page can be searched
//! with the browser's find; the faults follow in a second table.
//!
//! The output depends only on the input: the same `Timeline` gives the same bytes, and the
//! order of `marks` and `faults` in the input does not matter.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

/// What one failing run did, in simulated milliseconds from the start of the run.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// Heading, e.g. "swarm +acks-1, seed 18".
    pub title: String,
    /// Lines printed under the heading (replay command, violated checker...).
    pub notes: Vec<String>,
    /// Length of the run.
    pub end_ms: u64,
    /// End of the fault phase (a dashed vertical line; the heal phase follows).
    pub fault_phase_ms: u64,
    /// Lanes top to bottom: node names such as "order-1", "orders-db", "kafka-msk-1", plus
    /// the pseudo lane "network" for region cuts.
    pub lanes: Vec<String>,
    /// Faults as bars.
    pub faults: Vec<FaultBar>,
    /// Points in time on a lane.
    pub marks: Vec<Mark>,
}

/// A fault that held a lane from `from_ms` to `to_ms` (None: until the end of the run).
#[derive(Clone, Debug)]
pub struct FaultBar {
    /// The lane the bar is drawn on.
    pub lane: String,
    /// When the fault began.
    pub from_ms: u64,
    /// When the fault ended; `None` if it held until the end of the run.
    pub to_ms: Option<u64>,
    /// e.g. "kill", "power-off", "partition msk|nsk", "one-way msk→nsk".
    pub label: String,
}

/// What a mark stands for; each kind has its own shape and colour and a legend entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MarkKind {
    /// The order's status changed (a committed write), e.g. "PAYING → PAID".
    Status,
    /// A call to an external provider (PSP charge, courier shipment).
    Call,
    /// An event on a Kafka topic.
    Event,
    /// Anything else worth seeing (a restart, the end of the workload).
    Note,
}

/// A point in time on a lane.
#[derive(Clone, Debug)]
pub struct Mark {
    /// The lane the mark is drawn on.
    pub lane: String,
    /// When it happened.
    pub at_ms: u64,
    /// What it stands for; decides the shape and colour.
    pub kind: MarkKind,
    /// Short text shown beside the mark (may be cut) and whole in an SVG <title> tooltip.
    pub label: String,
}

impl Timeline {
    /// The page: a complete HTML document.
    pub fn to_html(&self) -> String {
        let mut out =
            String::with_capacity(16 * 1024 + 600 * (self.marks.len() + self.faults.len()));
        // Writing into a String cannot fail; the Result only carries `?` through the helpers.
        let _ = self.render(&mut out);
        out
    }

    /// Lanes in drawing order: `lanes` without repeats, then every lane that a fault or a mark
    /// names but `lanes` does not, sorted by name.
    fn lane_order(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        let mut order = Vec::new();
        for lane in &self.lanes {
            if seen.insert(lane.as_str()) {
                order.push(lane.as_str());
            }
        }
        let extra: BTreeSet<&str> = self
            .faults
            .iter()
            .map(|f| f.lane.as_str())
            .chain(self.marks.iter().map(|m| m.lane.as_str()))
            .filter(|lane| !seen.contains(lane))
            .collect();
        order.extend(extra);
        order
    }

    /// The time the axis covers: the run, stretched to hold anything recorded after its end;
    /// one second when there is nothing at all, so that the scale never divides by zero.
    fn span_ms(&self) -> u64 {
        let mut span = self.end_ms.max(self.fault_phase_ms);
        for mark in &self.marks {
            span = span.max(mark.at_ms);
        }
        for fault in &self.faults {
            span = span.max(fault.from_ms).max(fault.to_ms.unwrap_or(0));
        }
        if span == 0 {
            1000
        } else {
            span
        }
    }

    /// Where a fault's bar ends: its `to_ms`, or the end of the run; never before it began.
    fn fault_end_ms(&self, fault: &FaultBar) -> u64 {
        fault.to_ms.unwrap_or(self.end_ms).max(fault.from_ms)
    }

    /// Marks in the order they are drawn and listed: by time, lane, kind, label.
    fn sorted_marks(&self) -> Vec<&Mark> {
        let mut marks: Vec<&Mark> = self.marks.iter().collect();
        marks.sort_by(|a, b| {
            (a.at_ms, &a.lane, a.kind, &a.label).cmp(&(b.at_ms, &b.lane, b.kind, &b.label))
        });
        marks
    }

    /// Faults in the order they are drawn and listed: by start, end, lane, label.
    fn sorted_faults(&self) -> Vec<&FaultBar> {
        let mut faults: Vec<&FaultBar> = self.faults.iter().collect();
        faults.sort_by(|a, b| {
            (a.from_ms, self.fault_end_ms(a), &a.lane, &a.label).cmp(&(
                b.from_ms,
                self.fault_end_ms(b),
                &b.lane,
                &b.label,
            ))
        });
        faults
    }

    /// The horizontal scale: the lane-name margin, and the plot width from the run length.
    fn scale(&self, lanes: &[&str]) -> Scale {
        let name_chars = lanes
            .iter()
            .map(|name| display_lane_name(name).chars().count())
            .max()
            .unwrap_or(0)
            .min(MAX_LANE_NAME_CHARS);
        let left = (16.0 + LANE_NAME_CHAR_W * name_chars as f64).max(MIN_LEFT);
        let span_ms = self.span_ms();
        let wanted = left + PX_PER_S * span_ms as f64 / 1000.0 + RIGHT_MARGIN;
        let width = wanted.clamp(MIN_WIDTH, MAX_WIDTH).ceil();
        Scale {
            left,
            plot_w: width - left - RIGHT_MARGIN,
            width,
            span_ms,
        }
    }

    /// Rows with their heights, and every label assigned a place.
    fn layout(&self) -> Layout<'_> {
        let lanes = self.lane_order();
        let scale = self.scale(&lanes);
        let index: BTreeMap<&str, usize> = lanes
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, i))
            .collect();

        let mut faults_by_lane: Vec<Vec<&FaultBar>> = vec![Vec::new(); lanes.len()];
        for fault in self.sorted_faults() {
            if let Some(&i) = index.get(fault.lane.as_str()) {
                faults_by_lane[i].push(fault);
            }
        }
        let mut marks_by_lane: Vec<Vec<&Mark>> = vec![Vec::new(); lanes.len()];
        for mark in self.sorted_marks() {
            if let Some(&i) = index.get(mark.lane.as_str()) {
                marks_by_lane[i].push(mark);
            }
        }

        let limit = scale.width - 4.0;
        let mut rows = Vec::with_capacity(lanes.len());
        let mut hidden_labels = 0;
        let mut top = PLOT_TOP;
        for ((name, faults), marks) in lanes.iter().zip(faults_by_lane).zip(marks_by_lane) {
            let mut fault_slots = Slots::new(MAX_FAULT_TRACKS);
            let placed_faults: Vec<PlacedFault<'_>> = faults
                .into_iter()
                .map(|fault| {
                    let x1 = scale.x(fault.from_ms);
                    let x2 = scale.x(self.fault_end_ms(fault));
                    let label =
                        place_label(&mut fault_slots, &fault.label, x1 + 3.0, x1 - 3.0, limit);
                    if label.is_none() && !fault.label.is_empty() {
                        hidden_labels += 1;
                    }
                    PlacedFault {
                        fault,
                        x1,
                        x2,
                        label,
                    }
                })
                .collect();
            let mut mark_slots = Slots::new(MAX_MARK_SLOTS);
            let placed_marks: Vec<PlacedMark<'_>> = marks
                .into_iter()
                .map(|mark| {
                    let x = scale.x(mark.at_ms);
                    let label = place_label(&mut mark_slots, &mark.label, x + 8.0, x - 8.0, limit);
                    if label.is_none() && !mark.label.is_empty() {
                        hidden_labels += 1;
                    }
                    PlacedMark { mark, x, label }
                })
                .collect();

            // A row, top to bottom: the lines of fault labels; the mark-label lines above the
            // centre line (a 10 px label on line j above has its baseline at cy - 8 - 11j); the
            // centre line with the marks; the lines below (baselines at cy + 16 + 11j); 4 px.
            let bands = fault_slots.used().max(1) as f64;
            let slots = mark_slots.used().max(MIN_MARK_SLOTS);
            let above = slots.div_ceil(2) as f64;
            let below = (slots / 2) as f64;
            let cy = top + FAULT_BAND_H * bands + 6.0 + SLOT_H * above;
            let height = FAULT_BAND_H * bands + 17.0 + SLOT_H * (above + below);
            rows.push(Row {
                name,
                top,
                height,
                cy,
                faults: placed_faults,
                marks: placed_marks,
            });
            top += height;
        }
        Layout {
            scale,
            rows,
            plot_bottom: top,
            height: top + 32.0,
            hidden_labels,
        }
    }

    fn render(&self, out: &mut String) -> fmt::Result {
        let title = if self.title.trim().is_empty() {
            "Timeline"
        } else {
            self.title.as_str()
        };
        let title = esc(title);
        writeln!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
        )?;
        writeln!(
            out,
            "<title>{title}</title>\n<style>\n{CSS}</style>\n</head>\n<body>"
        )?;
        writeln!(out, "<h1>{title}</h1>")?;
        if !self.notes.is_empty() {
            writeln!(out, "<ul class=\"notes\">")?;
            for note in &self.notes {
                writeln!(out, "<li>{}</li>", esc(note))?;
            }
            writeln!(out, "</ul>")?;
        }

        let layout = self.layout();
        write!(
            out,
            "<p class=\"summary\">{} lanes, {} faults, {} marks; run length {}",
            layout.rows.len(),
            self.faults.len(),
            self.marks.len(),
            fmt_time(self.end_ms)
        )?;
        if self.fault_phase_ms > 0 {
            write!(out, "; fault phase until {}", fmt_time(self.fault_phase_ms))?;
        }
        writeln!(
            out,
            ". Hover a mark or a bar for its time and whole text; the table below lists every mark.</p>"
        )?;
        write_legend(out)?;
        self.write_svg(out, &layout)?;
        if layout.hidden_labels > 0 {
            writeln!(
                out,
                "<p class=\"summary\">{} labels left out of the picture where a lane is crowded; \
                 their marks keep the tooltip and are listed below.</p>",
                layout.hidden_labels
            )?;
        }
        self.write_tables(out)?;
        writeln!(out, "</body>\n</html>")
    }

    fn write_svg(&self, out: &mut String, layout: &Layout<'_>) -> fmt::Result {
        let scale = &layout.scale;
        let (w, h) = (scale.width, layout.height);
        let (left, right) = (scale.left, scale.left + scale.plot_w);
        let bottom = layout.plot_bottom;
        writeln!(
            out,
            "<div class=\"picture\">\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" \
             height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\" aria-label=\"timeline\">"
        )?;

        // Rows: background, centre line, name.
        for (i, row) in layout.rows.iter().enumerate() {
            let class = if i % 2 == 0 { "row-even" } else { "row-odd" };
            writeln!(
                out,
                "<rect class=\"{class}\" x=\"0\" y=\"{:.1}\" width=\"{w:.0}\" height=\"{:.1}\"/>",
                row.top, row.height
            )?;
            writeln!(
                out,
                "<line class=\"lane-line\" x1=\"{left:.1}\" y1=\"{cy:.1}\" x2=\"{right:.1}\" y2=\"{cy:.1}\"/>",
                cy = row.cy
            )?;
            let name = display_lane_name(row.name);
            let shown = truncate(name, MAX_LANE_NAME_CHARS);
            write!(
                out,
                "<text class=\"lane-name\" x=\"{:.1}\" y=\"{:.1}\">",
                left - 10.0,
                row.cy + 4.0
            )?;
            if shown.len() != name.len() {
                write!(out, "<title>{}</title>", esc(name))?;
            }
            writeln!(out, "{}</text>", esc(&shown))?;
        }

        // Time axis, above and below the lanes, with a grid line at every tick.
        writeln!(
            out,
            "<line class=\"axis\" x1=\"{left:.1}\" y1=\"{PLOT_TOP:.1}\" x2=\"{right:.1}\" y2=\"{PLOT_TOP:.1}\"/>\n\
             <line class=\"axis\" x1=\"{left:.1}\" y1=\"{bottom:.1}\" x2=\"{right:.1}\" y2=\"{bottom:.1}\"/>"
        )?;
        let step = tick_step_ms(scale.span_ms);
        let mut t = 0;
        while t <= scale.span_ms {
            let x = scale.x(t);
            let label = fmt_tick(t);
            writeln!(
                out,
                "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{PLOT_TOP:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\"/>\n\
                 <line class=\"tick\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{PLOT_TOP:.1}\"/>\n\
                 <line class=\"tick\" x1=\"{x:.1}\" y1=\"{bottom:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\n\
                 <text class=\"tick-label\" x=\"{x:.1}\" y=\"{:.1}\">{label}</text>\n\
                 <text class=\"tick-label\" x=\"{x:.1}\" y=\"{:.1}\">{label}</text>",
                PLOT_TOP - 6.0,
                bottom + 6.0,
                PLOT_TOP - 10.0,
                bottom + 19.0,
            )?;
            t += step;
        }

        // Faults.
        for row in &layout.rows {
            for placed in &row.faults {
                let fault = placed.fault;
                let until = match fault.to_ms {
                    Some(_) => fmt_time(self.fault_end_ms(fault)),
                    None => "the end of the run".to_string(),
                };
                write!(
                    out,
                    "<g><title>{} on {}: {} to {}</title><rect class=\"fault\" x=\"{:.1}\" y=\"{:.1}\" \
                     width=\"{:.1}\" height=\"{:.1}\"/>",
                    esc(&fault.label),
                    esc(display_lane_name(&fault.lane)),
                    fmt_time(fault.from_ms),
                    until,
                    placed.x1,
                    row.top + 1.0,
                    (placed.x2 - placed.x1).max(MIN_BAR_W),
                    row.height - 2.0
                )?;
                if let Some(label) = &placed.label {
                    write_label(
                        out,
                        "fault-label",
                        label,
                        row.top + 10.0 + FAULT_BAND_H * label.slot as f64,
                    )?;
                }
                writeln!(out, "</g>")?;
            }
        }

        // The end of the fault phase.
        if self.fault_phase_ms > 0 {
            let x = scale.x(self.fault_phase_ms);
            writeln!(
                out,
                "<line class=\"heal\" x1=\"{x:.1}\" y1=\"4\" x2=\"{x:.1}\" y2=\"{bottom:.1}\"/>"
            )?;
            if x + 60.0 < w {
                writeln!(
                    out,
                    "<text class=\"phase-label\" x=\"{:.1}\" y=\"13\" text-anchor=\"end\">← faults</text>\n\
                     <text class=\"phase-label\" x=\"{:.1}\" y=\"13\">heal →</text>",
                    x - 5.0,
                    x + 5.0
                )?;
            } else {
                writeln!(
                    out,
                    "<text class=\"phase-label\" x=\"{:.1}\" y=\"13\" text-anchor=\"end\">← faults | heal</text>",
                    x - 5.0
                )?;
            }
        }

        // Marks, over everything else.
        for row in &layout.rows {
            for placed in &row.marks {
                let mark = placed.mark;
                write!(
                    out,
                    "<g><title>{} — {} — {}: {}</title>{}",
                    fmt_time(mark.at_ms),
                    esc(display_lane_name(&mark.lane)),
                    kind_name(mark.kind),
                    esc(&mark.label),
                    shape(mark.kind, placed.x, row.cy)
                )?;
                if let Some(label) = &placed.label {
                    let level = (label.slot / 2) as f64;
                    let y = if label.slot % 2 == 0 {
                        row.cy - 8.0 - SLOT_H * level
                    } else {
                        row.cy + 16.0 + SLOT_H * level
                    };
                    let class = format!("mark-label k-{}", kind_name(mark.kind));
                    write_label(out, &class, label, y)?;
                }
                writeln!(out, "</g>")?;
            }
        }
        writeln!(out, "</svg>\n</div>")
    }

    fn write_tables(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "<h2>Marks</h2>")?;
        if self.marks.is_empty() {
            writeln!(out, "<p class=\"summary\">No marks.</p>")?;
        } else {
            writeln!(
                out,
                "<table class=\"marks\">\n<thead><tr><th>time</th><th>lane</th><th>kind</th><th>label</th></tr></thead>\n<tbody>"
            )?;
            for mark in self.sorted_marks() {
                writeln!(
                    out,
                    "<tr><td class=\"time\">{}</td><td>{}</td><td class=\"kind\">\
                     <svg width=\"14\" height=\"14\" aria-hidden=\"true\">{}</svg> {}</td><td class=\"text\">{}</td></tr>",
                    fmt_time(mark.at_ms),
                    esc(display_lane_name(&mark.lane)),
                    shape(mark.kind, 7.0, 7.0),
                    kind_name(mark.kind),
                    esc(&mark.label)
                )?;
            }
            writeln!(out, "</tbody>\n</table>")?;
        }
        if !self.faults.is_empty() {
            writeln!(
                out,
                "<h2>Faults</h2>\n<table class=\"faults\">\n<thead><tr><th>from</th><th>to</th><th>lane</th><th>fault</th></tr></thead>\n<tbody>"
            )?;
            for fault in self.sorted_faults() {
                let until = match fault.to_ms {
                    Some(_) => fmt_time(self.fault_end_ms(fault)),
                    None => "end of run".to_string(),
                };
                writeln!(
                    out,
                    "<tr><td class=\"time\">{}</td><td class=\"time\">{}</td><td>{}</td><td class=\"text\">{}</td></tr>",
                    fmt_time(fault.from_ms),
                    until,
                    esc(display_lane_name(&fault.lane)),
                    esc(&fault.label)
                )?;
            }
            writeln!(out, "</tbody>\n</table>")?;
        }
        Ok(())
    }
}

/// Pixels per simulated second before the width is clamped.
const PX_PER_S: f64 = 20.0;
/// Bounds of the picture's width in pixels.
const MIN_WIDTH: f64 = 1200.0;
const MAX_WIDTH: f64 = 4000.0;
/// Room right of the plot, for the last tick label.
const RIGHT_MARGIN: f64 = 30.0;
/// Smallest room left of the plot, for lane names.
const MIN_LEFT: f64 = 90.0;
/// Lane names longer than this are cut (the whole name stays in a tooltip).
const MAX_LANE_NAME_CHARS: usize = 32;
/// Advance of one character of a lane name (12 px monospace).
const LANE_NAME_CHAR_W: f64 = 7.3;
/// Advance of one character of a label (10 px monospace).
const LABEL_CHAR_W: f64 = 6.1;
/// Labels beside marks and bars are cut to this many characters.
const LABEL_CHARS: usize = 28;
/// The y of the top axis; lanes start below it.
const PLOT_TOP: f64 = 48.0;
/// Height of one line of fault labels at the top of a row.
const FAULT_BAND_H: f64 = 13.0;
/// Height of one line of mark labels.
const SLOT_H: f64 = 11.0;
/// Lines of mark labels a row always has room for (one above, one below the centre line).
const MIN_MARK_SLOTS: usize = 2;
/// Lines of mark labels a crowded row may grow to (three above, three below).
const MAX_MARK_SLOTS: usize = 6;
/// Lines of fault labels a row may grow to.
const MAX_FAULT_TRACKS: usize = 4;
/// Horizontal room kept free between two labels on one line.
const LABEL_GAP: f64 = 6.0;
/// A bar is at least this wide, so that a fault of no duration is still seen.
const MIN_BAR_W: f64 = 2.0;

/// Maps simulated time to x.
struct Scale {
    /// x of time zero.
    left: f64,
    /// Width of the plot, from time zero to `span_ms`.
    plot_w: f64,
    /// Width of the whole picture.
    width: f64,
    /// Time at the right end of the plot; never zero.
    span_ms: u64,
}

impl Scale {
    fn x(&self, ms: u64) -> f64 {
        self.left + self.plot_w * ms as f64 / self.span_ms.max(1) as f64
    }
}

/// Everything placed, ready to be written.
struct Layout<'a> {
    scale: Scale,
    rows: Vec<Row<'a>>,
    /// y of the bottom axis.
    plot_bottom: f64,
    /// Height of the whole picture.
    height: f64,
    /// Labels left out because their lane had no free line at their place.
    hidden_labels: usize,
}

/// One lane's row.
struct Row<'a> {
    name: &'a str,
    top: f64,
    height: f64,
    /// y of the centre line, where marks sit.
    cy: f64,
    faults: Vec<PlacedFault<'a>>,
    marks: Vec<PlacedMark<'a>>,
}

struct PlacedFault<'a> {
    fault: &'a FaultBar,
    x1: f64,
    x2: f64,
    label: Option<PlacedLabel>,
}

struct PlacedMark<'a> {
    mark: &'a Mark,
    x: f64,
    label: Option<PlacedLabel>,
}

/// A visible (possibly cut) label and where it goes.
struct PlacedLabel {
    /// Line within the row: for faults the band from the top; for marks, even lines are above
    /// the centre line and odd ones below, nearest first.
    slot: usize,
    x: f64,
    /// Whether the text ends at `x` (it would run off the right edge otherwise).
    anchor_end: bool,
    text: String,
}

/// Horizontal extents already taken on each line of labels in one row.
struct Slots {
    lines: Vec<Vec<(f64, f64)>>,
    max: usize,
}

impl Slots {
    fn new(max: usize) -> Self {
        Slots {
            lines: Vec::new(),
            max,
        }
    }

    /// The first line where `lo..hi` is free (opening a new one if allowed), now taken.
    fn take(&mut self, lo: f64, hi: f64) -> Option<usize> {
        let free = |taken: &Vec<(f64, f64)>| {
            taken
                .iter()
                .all(|&(a, b)| hi + LABEL_GAP <= a || b + LABEL_GAP <= lo)
        };
        if let Some(i) = self.lines.iter().position(free) {
            self.lines[i].push((lo, hi));
            return Some(i);
        }
        if self.lines.len() < self.max {
            self.lines.push(vec![(lo, hi)]);
            return Some(self.lines.len() - 1);
        }
        None
    }

    fn used(&self) -> usize {
        self.lines.len()
    }
}

/// Places `label` starting at `start`, or ending at `end` if starting there would run past
/// `limit`; `None` for an empty label or when every line is taken at that place.
fn place_label(
    slots: &mut Slots,
    label: &str,
    start: f64,
    end: f64,
    limit: f64,
) -> Option<PlacedLabel> {
    if label.is_empty() {
        return None;
    }
    let text = truncate(label, LABEL_CHARS);
    let w = LABEL_CHAR_W * text.chars().count() as f64;
    let (lo, hi, x, anchor_end) = if start + w <= limit {
        (start, start + w, start, false)
    } else {
        (end - w, end, end, true)
    };
    let slot = slots.take(lo, hi)?;
    Some(PlacedLabel {
        slot,
        x,
        anchor_end,
        text,
    })
}

fn write_label(out: &mut String, class: &str, label: &PlacedLabel, y: f64) -> fmt::Result {
    let anchor = if label.anchor_end {
        " text-anchor=\"end\""
    } else {
        ""
    };
    write!(
        out,
        "<text class=\"label {class}\" x=\"{:.1}\" y=\"{y:.1}\"{anchor}>{}</text>",
        label.x,
        esc(&label.text)
    )
}

/// The legend: a fault bar, each kind of mark, the heal line.
fn write_legend(out: &mut String) -> fmt::Result {
    writeln!(out, "<div class=\"legend\">")?;
    writeln!(
        out,
        "<span><svg width=\"28\" height=\"14\" aria-hidden=\"true\"><rect class=\"fault\" x=\"1\" y=\"1\" \
         width=\"26\" height=\"12\"/></svg>fault, from its start to its end</span>"
    )?;
    for kind in [
        MarkKind::Status,
        MarkKind::Call,
        MarkKind::Event,
        MarkKind::Note,
    ] {
        writeln!(
            out,
            "<span><svg width=\"14\" height=\"14\" aria-hidden=\"true\">{}</svg>{}</span>",
            shape(kind, 7.0, 7.0),
            kind_legend(kind)
        )?;
    }
    writeln!(
        out,
        "<span><svg width=\"10\" height=\"18\" aria-hidden=\"true\"><line class=\"heal\" x1=\"5\" y1=\"0\" \
         x2=\"5\" y2=\"18\"/></svg>end of the fault phase; the heal phase follows</span>"
    )?;
    writeln!(out, "</div>")
}

/// The SVG shape of a mark of `kind` centred at (`x`, `y`).
fn shape(kind: MarkKind, x: f64, y: f64) -> String {
    let class = format!("shape k-{}", kind_name(kind));
    match kind {
        MarkKind::Status => {
            format!("<circle class=\"{class}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\"/>")
        }
        MarkKind::Call => format!(
            "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"9\" height=\"9\"/>",
            x - 4.5,
            y - 4.5
        ),
        MarkKind::Event => format!(
            "<polygon class=\"{class}\" points=\"{x:.1},{:.1} {:.1},{y:.1} {x:.1},{:.1} {:.1},{y:.1}\"/>",
            y - 6.0,
            x + 6.0,
            y + 6.0,
            x - 6.0
        ),
        MarkKind::Note => format!(
            "<polygon class=\"{class}\" points=\"{x:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\"/>",
            y - 6.0,
            x + 5.5,
            y + 4.5,
            x - 5.5,
            y + 4.5
        ),
    }
}

/// The kind's name in tooltips, the table and CSS classes.
fn kind_name(kind: MarkKind) -> &'static str {
    match kind {
        MarkKind::Status => "status",
        MarkKind::Call => "call",
        MarkKind::Event => "event",
        MarkKind::Note => "note",
    }
}

fn kind_legend(kind: MarkKind) -> &'static str {
    match kind {
        MarkKind::Status => "status change of the order (a committed write)",
        MarkKind::Call => "call to an external provider",
        MarkKind::Event => "event on a Kafka topic",
        MarkKind::Note => "note (restart, end of workload...)",
    }
}

fn display_lane_name(name: &str) -> &str {
    if name.is_empty() {
        "(unnamed)"
    } else {
        name
    }
}

/// A tick step in milliseconds from the 1-2-5 series (with 30 s and 30 min added) such that
/// the axis from zero to `span_ms` has at most 20 ticks; since neighbouring steps differ by at
/// most 2.5 times, a span of at least 200 ms gets at least 9.
fn tick_step_ms(span_ms: u64) -> u64 {
    const STEPS: [u64; 19] = [
        10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000,
        300_000, 600_000, 1_200_000, 1_800_000, 3_600_000,
    ];
    if let Some(&step) = STEPS.iter().find(|&&step| span_ms / step < 20) {
        return step;
    }
    let mut step = 3_600_000u64;
    while span_ms / step >= 20 {
        step = step.saturating_mul(2);
    }
    step
}

/// A tick label: "0 s", "10 s", "1.5 s", "0.05 s".
fn fmt_tick(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        let frac = format!("{:03}", ms % 1000);
        format!("{}.{} s", ms / 1000, frac.trim_end_matches('0'))
    }
}

/// A time as seconds with milliseconds: "12.345 s".
fn fmt_time(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

/// `s` cut to at most `max` characters, the last of them "…" when anything was cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `s` safe as HTML or XML text and attribute values; control characters other than tab and
/// newline (not allowed in XML) become spaces.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r##"body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 16px 24px; color: #1f2933; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 20px 0 6px; }
ul.notes { margin: 0 0 8px; padding-left: 20px; }
ul.notes li { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; white-space: pre-wrap; }
.summary { color: #52606d; font-size: 13px; margin: 6px 0; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 20px; font-size: 13px; margin: 8px 0 10px; }
.legend span { display: inline-flex; align-items: center; gap: 6px; }
.picture { overflow-x: auto; border: 1px solid #d9dee3; }
.picture svg { display: block; }
svg text { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
.row-even { fill: #ffffff; }
.row-odd { fill: #f4f6f8; }
.lane-line { stroke: #c4cdd5; stroke-width: 1; }
.lane-name { font-size: 12px; fill: #1f2933; text-anchor: end; }
.axis { stroke: #7b8794; stroke-width: 1; }
.grid { stroke: #e1e5ea; stroke-width: 1; }
.tick { stroke: #7b8794; stroke-width: 1; }
.tick-label { font-size: 11px; fill: #52606d; text-anchor: middle; }
.fault { fill: #dc2626; fill-opacity: 0.16; stroke: #dc2626; stroke-opacity: 0.55; stroke-width: 1; }
.heal { stroke: #1f2933; stroke-width: 1.5; stroke-dasharray: 6 4; }
.phase-label { font-size: 11px; fill: #1f2933; }
.label { font-size: 10px; paint-order: stroke; stroke: #ffffff; stroke-width: 3px; stroke-linejoin: round; }
.fault-label { fill: #991b1b; }
.shape { stroke: #ffffff; stroke-width: 1; }
.k-status { fill: #1d4ed8; }
.k-call { fill: #b45309; }
.k-event { fill: #047857; }
.k-note { fill: #6d28d9; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e1e5ea; padding: 3px 10px; text-align: left; vertical-align: top; }
th { background: #f4f6f8; }
td.time { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.kind { white-space: nowrap; }
td.kind svg { vertical-align: -2px; }
td.text { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; }
"##;

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(lane: &str, at_ms: u64, kind: MarkKind, label: &str) -> Mark {
        Mark {
            lane: lane.to_string(),
            at_ms,
            kind,
            label: label.to_string(),
        }
    }

    fn fault(lane: &str, from_ms: u64, to_ms: Option<u64>, label: &str) -> FaultBar {
        FaultBar {
            lane: lane.to_string(),
            from_ms,
            to_ms,
            label: label.to_string(),
        }
    }

    fn small() -> Timeline {
        Timeline {
            title: "swarm +acks-1, seed 18".to_string(),
            notes: vec!["replay: ci/simulate --seed 18".to_string()],
            end_ms: 30_000,
            fault_phase_ms: 20_000,
            lanes: vec![
                "order-1".to_string(),
                "orders-db".to_string(),
                "network".to_string(),
            ],
            faults: vec![
                fault("order-1", 2_000, Some(5_000), "kill"),
                fault("network", 8_000, None, "partition msk|nsk"),
            ],
            marks: vec![
                mark("orders-db", 1_000, MarkKind::Status, "NEW → PAYING"),
                mark("order-1", 1_200, MarkKind::Call, "psp charge"),
                mark("order-1", 1_250, MarkKind::Event, "order.paid"),
                mark("orders-db", 9_000, MarkKind::Status, "PAYING → PAID"),
                mark("order-1", 25_000, MarkKind::Note, "workload done"),
            ],
        }
    }

    /// The value of attribute `name` in the first element of `html` that starts with `start`.
    fn attr(html: &str, start: &str, name: &str) -> Option<f64> {
        let element = &html[html.find(start)?..];
        let element = &element[..element.find('>')?];
        let key = format!(" {name}=\"");
        let value = &element[element.find(&key)? + key.len()..];
        value[..value.find('"')?].parse().ok()
    }

    #[test]
    fn text_is_escaped() {
        let mut t = small();
        t.title = "<b>title</b>".to_string();
        t.notes.push("a & b".to_string());
        t.marks.push(mark(
            "order-1",
            3_000,
            MarkKind::Note,
            "<script>alert('x')</script>",
        ));
        t.faults
            .push(fault("net\"work", 1_000, Some(2_000), "cut <all>"));
        let html = t.to_html();
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>title"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("&lt;b&gt;title&lt;/b&gt;"));
        assert!(html.contains("a &amp; b"));
        assert!(html.contains("net&quot;work"));
        assert!(html.contains("cut &lt;all&gt;"));
    }

    #[test]
    fn unknown_lanes_are_appended_at_the_bottom() {
        let mut t = small();
        t.lanes.push("order-1".to_string());
        t.marks
            .push(mark("zz-late", 4_000, MarkKind::Note, "restart"));
        t.faults
            .push(fault("kafka-msk-1", 4_000, Some(6_000), "power-off"));
        assert_eq!(
            t.lane_order(),
            ["order-1", "orders-db", "network", "kafka-msk-1", "zz-late"]
        );
        let html = t.to_html();
        assert_eq!(html.matches("<text class=\"lane-name\"").count(), 5);
        let network = html.find(">network</text>");
        let kafka = html.find(">kafka-msk-1</text>");
        let late = html.find(">zz-late</text>");
        assert!(network.is_some() && kafka.is_some() && late.is_some());
        assert!(network < kafka && kafka < late);
    }

    #[test]
    fn tick_step_gives_a_readable_number_of_ticks() {
        assert_eq!(tick_step_ms(120_000), 10_000);
        assert_eq!(tick_step_ms(60_000), 5_000);
        assert_eq!(tick_step_ms(10_000), 1_000);
        assert_eq!(tick_step_ms(600_000), 60_000);
        assert_eq!(tick_step_ms(1_000), 100);
        assert_eq!(tick_step_ms(0), 10);
        assert!(tick_step_ms(u64::MAX) > 0);
        for span in (200..5_000_000u64).step_by(997) {
            let ticks = span / tick_step_ms(span) + 1;
            assert!((9..=20).contains(&ticks), "{span} ms: {ticks} ticks");
        }
        assert_eq!(fmt_tick(0), "0 s");
        assert_eq!(fmt_tick(1_500), "1.5 s");
        assert_eq!(fmt_tick(50), "0.05 s");
        assert_eq!(fmt_tick(20_000), "20 s");
    }

    #[test]
    fn empty_timeline_renders_a_valid_page() {
        let html = Timeline::default().to_html();
        assert!(html.starts_with("<!DOCTYPE html>\n"));
        assert!(html.ends_with("</html>\n"));
        assert!(html.contains("<svg") && html.contains("</svg>"));
        assert!(html.contains("<h1>Timeline</h1>"));
        assert!(!html.contains("NaN") && !html.contains("inf"));
        // No fault phase, no heal line (only the legend's sample, which starts at y1="0").
        assert!(!html.contains("y1=\"4\""));
    }

    #[test]
    fn tooltip_holds_the_whole_label_and_the_picture_a_cut_one() {
        let long = "order.payment-captured for order 0b9f4c2e-7a1d-4c55-9e0f";
        let mut t = small();
        t.marks = vec![mark("order-1", 12_345, MarkKind::Event, long)];
        let html = t.to_html();
        let tooltip = format!("<title>12.345 s — order-1 — event: {long}</title>");
        assert!(html.contains(&tooltip), "{html}");
        let cut: String = long.chars().take(LABEL_CHARS - 1).collect();
        assert!(html.contains(&format!(">{cut}…</text>")));
        // The whole label appears in the tooltip and in the table, not in the picture's text.
        assert_eq!(html.matches(long).count(), 2);
        assert!(html.contains(&format!("<td class=\"text\">{long}</td>")));
    }

    #[test]
    fn crowded_labels_do_not_overlap() {
        let mut t = small();
        t.marks = (0..40)
            .map(|i| {
                mark(
                    "order-1",
                    10_000 + i * 10,
                    MarkKind::Status,
                    "PAYING → PAID, attempt",
                )
            })
            .collect();
        let layout = t.layout();
        let row = &layout.rows[0];
        let placed: Vec<&PlacedLabel> = row.marks.iter().filter_map(|m| m.label.as_ref()).collect();
        assert_eq!(placed.len(), MAX_MARK_SLOTS);
        assert_eq!(layout.hidden_labels, 40 - MAX_MARK_SLOTS);
        let slots: BTreeSet<usize> = placed.iter().map(|l| l.slot).collect();
        assert_eq!(slots.len(), MAX_MARK_SLOTS);
    }

    #[test]
    fn same_input_gives_same_bytes() {
        let t = small();
        let first = t.to_html();
        assert_eq!(first, t.clone().to_html());
        let mut shuffled = t.clone();
        shuffled.marks.reverse();
        shuffled.faults.reverse();
        assert_eq!(first, shuffled.to_html());
    }

    #[test]
    fn open_fault_extends_to_the_end_of_the_run() {
        let t = Timeline {
            end_ms: 10_000,
            lanes: vec!["a".to_string()],
            faults: vec![fault("a", 2_000, None, "kill")],
            ..Timeline::default()
        };
        let html = t.to_html();
        // Skip the legend's sample bar: look inside the picture.
        let picture = html.find("<svg xmlns").map_or("", |i| &html[i..]);
        let x = attr(picture, "<rect class=\"fault\" x=", "x");
        let width = attr(picture, "<rect class=\"fault\" x=", "width");
        let (Some(x), Some(width)) = (x, width) else {
            panic!("no fault bar in {html}");
        };
        let scale = t.scale(&t.lane_order());
        assert!((x - scale.x(2_000)).abs() < 0.1);
        assert!((x + width - scale.x(10_000)).abs() < 0.1);
        assert!((scale.x(10_000) - (scale.left + scale.plot_w)).abs() < 0.1);
        assert!(html.contains("kill on a: 2.000 s to the end of the run"));
    }

    #[test]
    fn width_grows_with_the_run_within_bounds() {
        let mut t = small();
        t.end_ms = 1_000;
        assert_eq!(t.layout().scale.width, MIN_WIDTH);
        t.end_ms = 120_000;
        let mid = t.layout().scale.width;
        assert!(mid > MIN_WIDTH && mid < MAX_WIDTH);
        t.end_ms = 3_600_000;
        assert_eq!(t.layout().scale.width, MAX_WIDTH);
    }
}
