//! The summary: medians of the repetitions as table rows, the printed table
//! and the JSON file.

use serde::Serialize;
use serde_json::Value;

use crate::common::Report;

/// One line of the table: a phase of a workload, the chest against a baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    pub phase: String,
    pub unit: String,
    /// Median over the repetitions.
    pub chest: Option<f64>,
    pub baseline_name: Option<String>,
    pub baseline: Option<f64>,
    /// chest / baseline (throughput: > 1 means the chest is faster).
    pub ratio: Option<f64>,
    pub goal: String,
    pub holds: Option<bool>,
    /// One figure per repetition.
    pub chest_raw: Vec<f64>,
    pub baseline_raw: Vec<f64>,
    /// chest / baseline of each repetition (paired: measured back to back).
    pub ratio_raw: Vec<f64>,
}

impl Row {
    pub fn new(workload: &str, phase: &str, unit: &str) -> Self {
        Self {
            workload: workload.into(),
            phase: phase.into(),
            unit: unit.into(),
            chest: None,
            baseline_name: None,
            baseline: None,
            ratio: None,
            goal: "—".into(),
            holds: None,
            chest_raw: Vec::new(),
            baseline_raw: Vec::new(),
            ratio_raw: Vec::new(),
        }
    }

    /// Sets the chest's figures (one per repetition) and their median.
    pub fn chest(mut self, raw: Vec<f64>) -> Self {
        self.chest = median(&raw);
        self.chest_raw = raw;
        self
    }

    /// Sets a baseline's figures and the ratio chest / baseline.
    pub fn baseline(mut self, name: &str, raw: Vec<f64>) -> Self {
        self.baseline = median(&raw);
        self.baseline_name = Some(name.into());
        self.ratio = match (self.chest, self.baseline) {
            (Some(c), Some(b)) if b > 0.0 => Some(c / b),
            _ => None,
        };
        self.ratio_raw = self
            .chest_raw
            .iter()
            .zip(&raw)
            .filter(|(_, &b)| b > 0.0)
            .map(|(c, b)| c / b)
            .collect();
        self.baseline_raw = raw;
        self
    }

    pub fn goal(mut self, goal: impl Into<String>, holds: Option<bool>) -> Self {
        self.goal = goal.into();
        self.holds = holds;
        self
    }
}

/// The median (mean of the middle two for an even count); `None` if empty.
pub fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The figures of one phase of one side, in repetition order.
pub fn figures(reports: &[Report], side: &str, phase: &str) -> Vec<f64> {
    let mut rs: Vec<&Report> = reports.iter().filter(|r| r.side == side).collect();
    rs.sort_by_key(|r| r.rep);
    rs.iter()
        .filter_map(|r| r.phase(phase).map(|p| p.value))
        .collect()
}

/// The highest peak RSS of any phase of each run of one side, in MiB.
pub fn peaks_mib(reports: &[Report], side: &str) -> Vec<f64> {
    let mut rs: Vec<&Report> = reports.iter().filter(|r| r.side == side).collect();
    rs.sort_by_key(|r| r.rep);
    rs.iter()
        .filter_map(|r| r.phases.iter().filter_map(|p| p.peak_rss).max())
        .map(|b| b as f64 / (1 << 20) as f64)
        .collect()
}

/// The rows `<label> p50 / p99 / max` (µs) of latency phases
/// `<phase> p50/p99/max`: the chest's against a baseline's, if given (no
/// ratio: lower is better and the goal is absolute). The goal is on p99:
/// at most `p99_goal_us`.
pub fn latency_rows(
    id: &str,
    label: &str,
    reports: &[Report],
    chest: (&str, &str),
    base: Option<(&str, &str, &str)>,
    p99_goal_us: f64,
) -> Vec<Row> {
    ["p50", "p99", "max"]
        .iter()
        .map(|q| {
            let mut row = Row::new(id, &format!("{label} {q} (lower is better)"), "µs")
                .chest(figures(reports, chest.0, &format!("{} {q}", chest.1)));
            if let Some((side, phase, name)) = base {
                row = row.baseline(name, figures(reports, side, &format!("{phase} {q}")));
            }
            row.ratio = None;
            row.ratio_raw.clear();
            if *q == "p99" {
                let holds = row.chest.map(|c| c <= p99_goal_us);
                row.goal(format!("≤ {} µs", fmt_num(p99_goal_us)), holds)
            } else {
                row
            }
        })
        .collect()
}

/// A peak-RSS row: a side's highest peak against budget + 64 MiB, next to
/// another side's peak (no ratio).
pub fn peak_row(
    id: &str,
    label: &str,
    budget: usize,
    reports: &[Report],
    chest: &str,
    base: &str,
) -> Row {
    let limit = (budget + 64 * (1 << 20)) as f64 / (1 << 20) as f64;
    let row = Row::new(id, label, "MiB")
        .chest(peaks_mib(reports, chest))
        .baseline(base, peaks_mib(reports, base));
    let holds = row.chest.map(|c| c <= limit);
    let mut row = row.goal(
        format!(
            "≤ {limit:.0} (budget {} + 64)",
            fmt_num(budget as f64 / (1 << 20) as f64)
        ),
        holds,
    );
    row.ratio = None;
    row.ratio_raw.clear();
    row
}

/// A number with about four significant digits, thousands grouped.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let a = x.abs();
    if a >= 10_000.0 {
        let s = format!("{:.0}", x.abs());
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if x < 0.0 {
            format!("-{out}")
        } else {
            out
        }
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The table, aligned, as text.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "workload", "phase", "unit", "chest", "baseline", "ratio", "goal", "holds",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.workload.clone(),
                r.phase.clone(),
                r.unit.clone(),
                r.chest.map_or("error".into(), fmt_num),
                match (&r.baseline_name, r.baseline) {
                    (Some(n), Some(b)) => format!("{} ({n})", fmt_num(b)),
                    (Some(n), None) => format!("error ({n})"),
                    _ => "—".into(),
                },
                r.ratio.map_or("—".into(), |x| format!("{x:.2}")),
                r.goal.clone(),
                match r.holds {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "—".into(),
                },
            ]
        })
        .collect();
    let mut width = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    // Numbers right-aligned, text left-aligned.
    let right = [false, false, false, true, true, true, false, false];
    let line = |row: &[String]| {
        let mut s = String::new();
        for (i, c) in row.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            if i > 0 {
                s.push_str("  ");
            }
            if right[i] {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < row.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(&header.map(String::from));
    let total: usize = width.iter().sum::<usize>() + 2 * (width.len() - 1);
    out.push_str(&"-".repeat(total));
    out.push('\n');
    let mut last = "";
    for (row, r) in cells.iter().zip(rows) {
        if !last.is_empty() && last != r.workload {
            out.push('\n');
        }
        last = &r.workload;
        out.push_str(&line(row));
    }
    out
}

/// Today's date and time in UTC, ISO 8601, from the system clock.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `git rev-parse HEAD` of the working directory, or "unknown".
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `true` if `git status` shows changes to tracked or new files (the
/// measured code may differ from the commit).
pub fn git_dirty() -> Option<bool> {
    std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=normal"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty())
}

/// The 1-minute load average, if the system has one: how busy the machine was.
pub fn load_average() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(Value::Null, Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(1_234_567.0), "1,234,567");
        assert_eq!(fmt_num(123.4), "123");
        assert_eq!(fmt_num(0.1234), "0.123");
    }

    #[test]
    fn dates_look_like_dates() {
        let d = now_utc();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.starts_with("20"), "{d}");
    }
}
